"""Readiness writes its decision into a SCHEDULED workitem (the SCP's own change, PS3.4 CC.2.5.1.3):
the workitem's `workitem_input` rows (those the policy chose), its Input Readiness State, and the State
Report the change owes, all in the caller's transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from workflow.ups.reporting import report
from workflow.ups.rules import events as ups_events
from workflow.ups.tables import Workitem, WorkitemInput

W = Workitem.__table__
INPUTS = WorkitemInput.__table__
READINESS = "00404041"


def input_rows(conn: Connection, uid: str) -> dict[str, Any]:
    """The workitem's server-managed input rows, by SOP Instance UID."""
    return {r.sop_instance_uid: r for r in conn.execute(select(INPUTS).where(INPUTS.c.workitem_uid == uid))}


def apply_readiness(conn: Connection, row, change, now: datetime, study_uid: str,
                    current: dict | None = None) -> int:
    """Write a readiness change (its inputs and Input Readiness State) into the workitem `row`. Returns
    events written. `current`: the workitem's input rows by SOP Instance UID, when the caller read them."""
    uid = row.sop_instance_uid
    wanted = {i.instance.sop_instance_uid: i for i in change.inputs}
    current = input_rows(conn, uid) if current is None else current
    stale = [u for u, r in current.items()
             if u not in wanted or _input_values(wanted[u], study_uid) != _row_values(r)]
    if stale:
        conn.execute(delete(INPUTS).where(INPUTS.c.workitem_uid == uid, INPUTS.c.sop_instance_uid.in_(stale)))
    fresh = [_input_row(uid, i, study_uid) for u, i in wanted.items() if u not in current or u in stale]
    if fresh:
        conn.execute(INPUTS.insert(), fresh)
    if change.readiness.value == row.input_readiness_state:
        return 0
    ds = json.loads(row.dataset_json)
    ds[READINESS] = {"vr": "CS", "Value": [change.readiness.value]}
    # Only a SCHEDULED workitem takes the SCP's readiness change: a guard should the caller's read of
    # `row` ever be older than the row (the caller locks it on PostgreSQL).
    changed = conn.execute(update(W).where(W.c.sop_instance_uid == uid, W.c.procedure_step_state == "SCHEDULED")
                           .values(input_readiness_state=change.readiness.value,
                                   dataset_json=json.dumps(ds, sort_keys=True), updated_at=now)).rowcount
    if not changed:
        return 0
    return report(conn, uid, row.created_at, ups_events.STATE_REPORT, ups_events.state_report(ds), now)


def _input_values(chosen, study_uid: str) -> tuple:
    inst = chosen.instance
    return (inst.sop_class_uid, study_uid, inst.series_instance_uid, chosen.ae_title, chosen.retrieve_url,
            chosen.file_set_id, chosen.file_set_uid)


def _row_values(r) -> tuple:
    return (r.sop_class_uid, r.study_instance_uid, r.series_instance_uid, r.retrieve_ae_title, r.retrieve_url,
            r.file_set_id, r.file_set_uid)


def _input_row(uid: str, chosen, study_uid: str) -> dict[str, Any]:
    inst = chosen.instance
    return dict(workitem_uid=uid, sop_instance_uid=inst.sop_instance_uid, sop_class_uid=inst.sop_class_uid,
                study_instance_uid=study_uid, series_instance_uid=inst.series_instance_uid,
                retrieve_ae_title=chosen.ae_title, retrieve_url=chosen.retrieve_url,
                file_set_id=chosen.file_set_id, file_set_uid=chosen.file_set_uid)
