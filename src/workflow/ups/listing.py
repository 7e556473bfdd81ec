"""Read-only views of the worklist for operators (`wfm ups list`, `wfm ups show`)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select

from workflow.ups.tables import Workitem
from workflow.store.engine import reading

W = Workitem.__table__
COLUMNS = ("sop_instance_uid", "procedure_step_state", "input_readiness_state", "priority",
           "scheduled_start_datetime", "worklist_label", "procedure_step_label", "patient_id")


def list_workitems(engine: Engine, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    stmt = select(*(W.c[name] for name in COLUMNS)).order_by(W.c.scheduled_start_datetime.desc(),
                                                               W.c.sop_instance_uid).limit(limit)
    if state:
        stmt = stmt.where(W.c.procedure_step_state == state)
    with reading(engine) as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


def show_workitem(engine: Engine, uid: str) -> dict[str, Any] | None:
    """The workitem as DICOM JSON, as N-GET would return it (no Transaction UID)."""
    with reading(engine) as conn:
        text = conn.execute(select(W.c.dataset_json).where(W.c.sop_instance_uid == uid)).scalar_one_or_none()
    return json.loads(text) if text else None
