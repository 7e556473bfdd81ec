"""`wfm db check`: the stored data sets (workitems, IANs, performed procedure steps) that today's checks
would refuse. Versions before 0.17 stored some payloads the server now refuses (a VR the attribute does
not allow, a value of the wrong JSON type, a date that does not exist), after which a C-FIND matching
such a workitem failed and its N-GET answered 0110. The command lists them, one line each (`--json`:
an array), so that a site upgrading can correct them at their source; it changes nothing. Exit status
0 when none is found, 1 when some are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from workflow.cli.common import engine_of, print_table
from workflow.kernel import attributes, dicom_json_check

BATCH = 1000  # rows read at a time: a million workitems are read in constant memory
_DATES = {"DA": attributes.is_date, "TM": attributes.is_time, "DT": attributes.is_datetime}


@dataclass(frozen=True)
class Finding:
    kind: str  # workitem, IAN, MPPS
    uid: str  # its SOP Instance UID
    problem: str


def _sources():
    from workflow.ian.tables import Notification
    from workflow.mpps.tables import PerformedStep
    from workflow.ups.tables import Workitem

    return (("workitem", Workitem.__table__), ("IAN", Notification.__table__),
            ("MPPS", PerformedStep.__table__))


def findings(engine) -> Iterator[Finding]:
    from sqlalchemy import select

    from workflow.store.engine import reading

    for kind, table in _sources():
        with reading(engine) as conn:
            rows = conn.execution_options(yield_per=BATCH).execute(
                select(table.c.sop_instance_uid, table.c.dataset_json).order_by(table.c.sop_instance_uid))
            for uid, text in rows:
                problem = problem_of(text)
                if problem is not None:
                    yield Finding(kind, uid, problem)


def problem_of(text: str) -> str | None:
    """Why a stored data set would be refused today, or None."""
    try:
        ds = dicom_json_check.check(dicom_json_check.loads(text))
    except (dicom_json_check.NotJson, dicom_json_check.DicomJsonError) as exc:
        return str(exc)
    return _impossible_date(ds, "")


def _impossible_date(ds: dict[str, Any], where: str) -> str | None:
    for tag, element in ds.items():
        vr = element.get("vr")
        for n, value in enumerate(element.get("Value") or ()):
            if vr == "SQ":
                found = _impossible_date(value, f"{where}{tag}[{n}].")
                if found:
                    return found
            elif vr in _DATES and isinstance(value, str) and value.strip() and not _DATES[vr](value):
                return f"{where}{tag}: {value!r} is not a {vr} value that exists (PS3.5 Table 6.2-1)"
    return None


def cmd_db_check(args) -> int:
    engine = engine_of(args)
    try:
        found = list(findings(engine))
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps([asdict(f) for f in found], indent=2))
    elif found:
        print_table([("KIND", "SOP INSTANCE UID", "PROBLEM")] + [(f.kind, f.uid, f.problem[:200]) for f in found])
    else:
        print("no stored data set that today's checks would refuse")
    return 1 if found else 0
