"""Who hears of a change read with the workitem it changes (ups/worklist.py `_load`,
ups/subscriptions.py `candidates_of`): per-workitem, global, suspended global, filtered and
opted-out subscriptions give the same recipients as asking after the change did, on both backends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from pydicom.uid import generate_uid
from sqlalchemy import delete, select

from testkit.ups import workitem
from workflow.config import Settings
from workflow.store.engine import reading
from workflow.ups import subscriptions as subs
from workflow.ups.tables import OutboxEvent, Subscription
from workflow.ups.worklist import WorklistService

O = OutboxEvent.__table__


def _claim(service: WorklistService, uid: str) -> None:
    info = {"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}, "00081195": {"vr": "UI", "Value": [generate_uid()]}}
    assert service.change_state(uid, info).status.code == 0


def _heard_of_claim(engine, uid: str) -> list[str]:
    with reading(engine) as conn:
        rows = conn.execute(select(O.c.receiving_ae, O.c.event_json)
                            .where(O.c.workitem_uid == uid, O.c.event_type_id == 1).order_by(O.c.id)).all()
    return [ae for ae, event in rows if json.loads(event)["00741000"]["Value"][0] == "IN PROGRESS"]


def test_a_claim_is_reported_to_those_its_subscriptions_cover(engine):
    with engine.begin() as conn:  # this module's subscriptions only
        conn.execute(delete(Subscription.__table__))
    service = WorklistService(engine, Settings(database_url=str(engine.url)))
    now = datetime.now(timezone.utc)
    label = f"flt-{generate_uid()[-10:]}"
    older, matching, other, opted_out = (generate_uid() for _ in range(4))
    assert service.create(older, workitem().to_json_dict()).status.code == 0
    with engine.begin() as conn:
        subs.subscribe_global(conn, "GLOBAL1", False, now)
        subs.subscribe_global(conn, "SUSPENDED", False, now)
        subs.subscribe_global(conn, "FILTER1", False, now, {"00741202": {"vr": "LO", "Value": [label]}})
        subs.subscribe_workitem(conn, "ONEITEM", other, False, now)
    for uid, overrides in ((matching, {"WorklistLabel": label}), (other, {}), (opted_out, {})):
        assert service.create(uid, workitem(**overrides).to_json_dict()).status.code == 0
    with engine.begin() as conn:
        subs.suspend_global(conn, "SUSPENDED", datetime.now(timezone.utc) + timedelta(seconds=1))
        subs.unsubscribe_workitem(conn, "GLOBAL1", opted_out, now)
    for uid in (older, matching, other, opted_out):
        _claim(service, uid)
    # A suspended global subscription keeps the workitems created before its suspension.
    assert _heard_of_claim(engine, older) == ["GLOBAL1", "SUSPENDED"]
    assert _heard_of_claim(engine, matching) == ["FILTER1", "GLOBAL1", "SUSPENDED"]
    assert _heard_of_claim(engine, other) == ["GLOBAL1", "ONEITEM", "SUSPENDED"]
    assert _heard_of_claim(engine, opted_out) == ["SUSPENDED"]
