"""A study whose instances all move to another study (the archive corrected its Study Instance UID) goes
back to REQUESTED; and a study whose pass fails holds up no other study."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from pydicom.uid import generate_uid
from sqlalchemy import select

from testkit.ian import instance_item, make_ian
from workflow.app import App
from workflow.ian.ingest import Received
from workflow.ian.rules.notification import parse_ian
from workflow.readiness import service as readiness_service
from workflow.readiness.tables import RequestedProcedure

RP = RequestedProcedure.__table__


def ian(app: App, study: str, series: dict[str, list[str]]) -> None:
    ds = make_ian(study, {s: [instance_item(uid) for uid in uids] for s, uids in series.items()}).to_json_dict()
    app.ingest.ingest(Received(generate_uid(), "ARCHIVE", "127.0.0.1:1", datetime.now(timezone.utc), ds),
                      parse_ian(ds, 1000))


def states(app: App, study: str) -> list[str]:
    with app.engine.connect() as conn:
        return list(conn.execute(select(RP.c.state).where(RP.c.study_instance_uid == study)).scalars())


def test_a_study_whose_instances_all_moved_away_is_requested_again(services, caplog):
    app = services
    first, corrected, series = generate_uid(), generate_uid(), generate_uid()
    uids = [generate_uid() for _ in range(3)]
    ian(app, first, {series: uids})
    app.readiness.run_pending(datetime.now(timezone.utc))
    assert states(app, first) == ["IN PROGRESS"]
    ian(app, corrected, {series: uids})  # the same instances, now in another study
    with app.engine.begin() as conn:  # the first study evaluated again (any later mark does this)
        app.readiness.mark(conn, first, datetime.now(timezone.utc))
    with caplog.at_level(logging.ERROR, "workflow.readiness"):
        app.readiness.run_pending(datetime.now(timezone.utc))
    assert not caplog.records, caplog.text
    assert states(app, first) == ["REQUESTED"] and states(app, corrected) == ["IN PROGRESS"]
    assert app.readiness.pending() == 0


def test_a_study_whose_pass_fails_holds_up_no_other(services, monkeypatch, caplog):
    """Its pass rolls back and its mark stays, retried after a wait that doubles; the other studies
    marked with it (after it) are evaluated meanwhile."""
    app = services
    failing, other = generate_uid(), generate_uid()
    ian(app, failing, {generate_uid(): [generate_uid()]})
    ian(app, other, {generate_uid(): [generate_uid()]})
    original = app.readiness.update_study

    def update_study(conn, study_uid, now):
        if study_uid == failing:
            raise RuntimeError("this study cannot be evaluated")
        return original(conn, study_uid, now)

    monkeypatch.setattr(app.readiness, "update_study", update_study)
    # Every study evaluated in full, as for a study something watches (the quick path never fails so).
    monkeypatch.setattr(app.readiness, "_settle_quick", lambda due, now, batch: due)
    now = datetime.now(timezone.utc)
    with caplog.at_level(logging.ERROR, "workflow.readiness"):
        app.readiness.run_pending(now)
    assert states(app, other) == ["IN PROGRESS"] and states(app, failing) == []
    assert app.readiness.pending() == 1  # the failing study's mark, kept
    assert [r.study_instance_uid for r in caplog.records] == [failing]
    assert "tried again in 5 s" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.ERROR, "workflow.readiness"):
        app.readiness.run_pending(now + timedelta(seconds=1))  # not yet
        assert not caplog.records and app.readiness.next_due == now + timedelta(seconds=readiness_service.RETRY_FIRST)
        app.readiness.run_pending(now + timedelta(seconds=6))  # retried, failing again: the wait doubles
        assert "tried again in 10 s" in caplog.records[-1].getMessage()
    monkeypatch.setattr(app.readiness, "update_study", original)
    app.readiness.run_pending(now + timedelta(seconds=17))
    assert states(app, failing) == ["IN PROGRESS"] and app.readiness.pending() == 0
