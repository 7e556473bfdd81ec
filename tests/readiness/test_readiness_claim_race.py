"""A claim that commits while readiness evaluates the workitem's study keeps its IN PROGRESS data set:
readiness locks the SCHEDULED workitems it reads (PostgreSQL), so it either sees the claim's commit
and leaves the workitem alone, or the claim waits for it."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select, text

from testkit.ian import instance_item, make_ian
from testkit.mpps import completed, in_progress
from testkit.ups import workitem
from workflow.ian.ingest import Received
from workflow.ian.rules.notification import parse_ian
from workflow.ups.tables import Workitem
from workflow.ups.worklist import WorklistService

W = Workitem.__table__


class PausedAudit:
    """Holds a claim inside its transaction (the audit record is written after the workitem's row was
    changed, before COMMIT) until the test lets it go."""

    def __init__(self) -> None:
        self.inside, self.go = threading.Event(), threading.Event()

    def record(self, conn, message) -> None:
        self.inside.set()
        assert self.go.wait(30)

    def committed(self) -> None:
        pass

    def record_now(self, message) -> None:
        pass


def _blocked_backends(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")).scalar()


def test_a_claim_committing_during_an_evaluation_stays_in_progress(services):
    app = services
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises the two transactions (BEGIN IMMEDIATE): no interleaving")
    study, series, uid = generate_uid(), generate_uid(), generate_uid()
    sops = [generate_uid(), generate_uid()]
    assert app.worklist.create(uid, workitem(StudyInstanceUID=study, InputReadinessState="INCOMPLETE")
                               .to_json_dict()).status.code == 0
    mpps = generate_uid()  # a COMPLETED MPPS and an IAN of its instances: the next pass makes it READY
    app.performed_steps.create(mpps, in_progress(study).to_json_dict(), "CT1")
    app.performed_steps.set(mpps, completed({series: sops}).to_json_dict())
    ds = make_ian(study, {series: [instance_item(sop) for sop in sops]}).to_json_dict()
    app.ingest.ingest(Received(generate_uid(), "ARCHIVE", "127.0.0.1:1", datetime.now(timezone.utc), ds),
                      parse_ian(ds, 1000))

    audit = PausedAudit()
    claims = WorklistService(app.engine, app.settings, audit=audit)
    txn = generate_uid()
    info = {"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}, "00081195": {"vr": "UI", "Value": [txn]}}
    outcomes: list = []
    claim = threading.Thread(target=lambda: outcomes.append(claims.change_state(uid, info)))
    claim.start()
    assert audit.inside.wait(30)  # the claim holds the workitem's row, changed, not committed

    evaluation = threading.Thread(target=lambda: app.readiness.run_pending(datetime.now(timezone.utc)))
    evaluation.start()
    deadline = time.monotonic() + 10
    while _blocked_backends(app.engine) == 0:  # the pass waits for the claim's row
        assert time.monotonic() < deadline, "the readiness pass never waited for the claimed workitem"
        time.sleep(0.01)
    audit.go.set()
    claim.join(30)
    evaluation.join(30)
    assert outcomes and outcomes[0].status.code == 0

    with app.engine.connect() as conn:
        row = conn.execute(select(W).where(W.c.sop_instance_uid == uid)).one()
    stored = json.loads(row.dataset_json)
    assert row.procedure_step_state == "IN PROGRESS"
    assert stored["00741000"]["Value"] == ["IN PROGRESS"]  # not overwritten by the SCHEDULED copy
    assert row.transaction_uid == txn
