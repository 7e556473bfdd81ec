"""Read-only views of the worklist for operators (`wfm ups list`, `wfm ups show`): the workitems as
rows, one workitem exactly as N-GET returns it (the service's `get`, so its server-managed Input
Information is there), and both as text a person reads."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from pydicom.datadict import keyword_for_tag
from pydicom.uid import UID
from sqlalchemy import Engine, select

from workflow.config import Settings
from workflow.kernel import statuses
from workflow.kernel.json_model import JsonDataset, first, tag_of
from workflow.store.engine import reading
from workflow.ups.tables import Workitem
from workflow.ups.worklist import WorklistService

W = Workitem.__table__
COLUMNS = ("sop_instance_uid", "procedure_step_state", "input_readiness_state", "priority",
           "worklist_label", "procedure_step_label", "patient_id")
START = tag_of("ScheduledProcedureStepStartDateTime")


def list_workitems(engine: Engine, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Workitems, latest scheduled start first. `scheduled_start_datetime` is ISO 8601, with the offset
    the workitem gives (the indexed column drops it, so it is read from the data set)."""
    stmt = select(*(W.c[name] for name in COLUMNS), W.c.dataset_json).order_by(
        W.c.scheduled_start_datetime.desc(), W.c.sop_instance_uid).limit(limit)
    if state:
        stmt = stmt.where(W.c.procedure_step_state == state)
    with reading(engine) as conn:
        rows = [dict(row._mapping) for row in conn.execute(stmt)]
    for row in rows:
        start = parse_dicom_datetime(first(json.loads(row.pop("dataset_json")), START))
        row["scheduled_start_datetime"] = start.isoformat() if start else None
    return rows


def show_workitem(engine: Engine, settings: Settings, uid: str) -> JsonDataset | None:
    """The workitem as DICOM JSON, exactly as N-GET returns it; None for an unknown UID."""
    outcome = WorklistService(engine, settings).get(uid, None)
    return outcome.dataset if outcome.status == statuses.SUCCESS else None


# --- DateTime (DT) values -------------------------------------------------------------------------------

_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def parse_dicom_datetime(text: str | None) -> datetime | None:
    """A DICOM DT value as a datetime: aware when it has an offset, naive (as given) otherwise; None
    when absent or not a DT."""
    found = _DT.match((text or "").strip())
    if not found:
        return None
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    zone = None
    if offset:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:])))
    try:
        return datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                        int(second or 0), int((fraction or "0").ljust(6, "0")), tzinfo=zone)
    except ValueError:
        return None


def readable_datetime(iso: str | None) -> str:
    """An ISO 8601 value for a person: local time when it has an offset, as given otherwise."""
    if not iso:
        return "-"
    at = datetime.fromisoformat(iso)
    if at.tzinfo is not None:
        at = at.astimezone()
    return at.strftime("%Y-%m-%d %H:%M:%S" if at.second else "%Y-%m-%d %H:%M")


# --- A data set as text -----------------------------------------------------------------------------------

def describe(ds: JsonDataset, depth: int = 0) -> Iterator[str]:
    """DICOM JSON as indented lines: keyword (tag) VR: value; a sequence's items numbered below it."""
    pad = "  " * depth
    for tag in sorted(ds):
        element = ds[tag]
        vr = element.get("vr", "UN")
        name = f"{keyword_for_tag(int(tag, 16)) or 'Unknown'} ({tag[:4]},{tag[4:]}) {vr}"
        values = element.get("Value") or []
        if vr == "SQ":
            yield f"{pad}{name}: {len(values)} item{'' if len(values) == 1 else 's'}"
            for number, item in enumerate(values, 1):
                yield f"{pad}  item {number}"
                yield from describe(item or {}, depth + 2)
        else:
            yield f"{pad}{name}: {_value_text(vr, element, values)}"


def _value_text(vr: str, element: dict, values: list) -> str:
    if "InlineBinary" in element or "BulkDataURI" in element:
        return "(binary data)"
    if not values:
        return "(empty)"
    texts = []
    for value in values:
        if isinstance(value, dict):  # PN
            value = value.get("Alphabetic", "")
        text = str(value)
        if vr == "UI" and UID(text).name != text:
            text += f" ({UID(text).name})"
        texts.append(text)
    return "\\".join(texts)
