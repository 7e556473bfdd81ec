"""A study nothing watches (no workitem, template or MPPS; known only from IANs) costs the readiness
worker one indexed lookup, and ends exactly as the full evaluation leaves it."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from pydicom.uid import generate_uid
from sqlalchemy import event, select

from testkit.ian import instance_item, make_ian
from workflow.app import App
from workflow.ian.ingest import Received
from workflow.ian.rules.notification import parse_ian
from workflow.readiness.tables import ReadinessPending, RequestedProcedure

RP = RequestedProcedure.__table__
PENDING = ReadinessPending.__table__


def _ian(app: App, study: str) -> None:
    ds = make_ian(study, {generate_uid(): [instance_item(generate_uid()) for _ in range(3)]}).to_json_dict()
    app.ingest.ingest(Received(generate_uid(), "ARCHIVE", "127.0.0.1:1", datetime.now(timezone.utc), ds),
                      parse_ian(ds, 1000))


def _procedures(app: App, study: str) -> list[tuple]:
    with app.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(RP.c.accession_number, RP.c.requested_procedure_id, RP.c.state,
                                                      RP.c.sources).where(RP.c.study_instance_uid == study))]


class Statements:
    def __init__(self, engine) -> None:
        self.engine, self.seen, self._lock = engine, [], threading.Lock()

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, *args):
        if statement.lstrip().split()[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            with self._lock:
                self.seen.append(statement)


def test_a_study_known_only_from_ians_ends_as_the_full_evaluation_leaves_it(services):
    app = services
    quick, full = generate_uid(), generate_uid()
    _ian(app, quick)
    _ian(app, full)
    with app.engine.begin() as conn:  # the full evaluation, as for a study something watches
        app.readiness.update_study(conn, full, datetime.now(timezone.utc))
    app.readiness.run_pending(datetime.now(timezone.utc))
    assert _procedures(app, quick) == _procedures(app, full) == [("", "", "IN PROGRESS", "IAN")]
    assert app.readiness.pending() == 0


def test_such_studies_cost_a_few_statements_together_however_many(services):
    """A pass over studies known only from IANs, however many: the marks read, one lookup (on
    PostgreSQL it also locks their marks), their bare requested procedures created (first pass
    only), the marks cleared."""
    app = services
    studies = [generate_uid() for _ in range(30)]
    for study in studies:
        _ian(app, study)
    with Statements(app.engine) as statements:
        app.readiness.run_pending(datetime.now(timezone.utc))
    assert len(statements.seen) == 4, statements.seen
    for study in studies:  # a further IAN for each
        _ian(app, study)
    with Statements(app.engine) as statements:
        app.readiness.run_pending(datetime.now(timezone.utc))
    assert len(statements.seen) == 3, statements.seen
    assert all(_procedures(app, study) == [("", "", "IN PROGRESS", "IAN")] for study in studies)
    assert app.readiness.pending() == 0


def test_a_mark_renewed_after_the_listing_is_cleared_too(services):
    """An IAN that renews the mark between the worker's listing and the settling is settled with it
    (the lookup holds the mark as it is now): the mark is cleared, not listed again."""
    app = services
    study = generate_uid()
    _ian(app, study)
    with app.engine.connect() as conn:  # the worker's listing: the study is marked
        conn.execute(select(PENDING.c.generation).where(PENDING.c.study_instance_uid == study)).scalar_one()
    _ian(app, study)  # after the listing
    app.readiness._evaluate([study], datetime.now(timezone.utc))
    with app.engine.connect() as conn:
        assert conn.execute(select(PENDING).where(PENDING.c.study_instance_uid == study)).first() is None
    assert _procedures(app, study) == [("", "", "IN PROGRESS", "IAN")]
