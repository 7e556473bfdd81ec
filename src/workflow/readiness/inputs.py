"""Readiness writes its decision into a SCHEDULED workitem (the SCP's own change, PS3.4 CC.2.5.1.3):
the workitem's `workitem_input` rows (those the policy chose), its Input Readiness State, and the State
Report the change owes, all in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import lru_cache
from itertools import compress
from operator import is_not
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from workflow.readiness.tables import ReadinessInputs
from workflow.store.bulk import array_names, positional_sql, unnest

from workflow.ups.reporting import report
from workflow.ups.rules import events as ups_events
from workflow.ups.tables import Workitem, WorkitemInput

W = Workitem.__table__
INPUTS = WorkitemInput.__table__
WRITES = ReadinessInputs.__table__
READINESS = "00404041"


class KeptInputs:
    """A workitem's input rows as this process last read or wrote them, kept between incremental
    passes while `write_id` is the workitem's last write (`readiness_inputs`): `values` by SOP Instance
    UID as `_row_values` gives them; `sources` the Input each was written from (the evaluation keeps
    an unchanged instance's Input, so most rows are known unchanged without comparing values)."""

    def __init__(self, write_id: str | None, values: dict[str, tuple]) -> None:
        self.write_id, self.values = write_id, values
        self.sources: dict[str, Any] = {}
        self.synced: Any = None  # the Choices' mark when the rows were last made its inputs (`Choices.mark`)


def input_values(conn: Connection, uid: str) -> dict[str, tuple]:
    """The workitem's server-managed input rows, by SOP Instance UID (their `_row_values`)."""
    return {r.sop_instance_uid: _row_values(r) for r in conn.execute(select(INPUTS).where(INPUTS.c.workitem_uid == uid))}


def last_write(conn: Connection, uid: str) -> str | None:
    return conn.execute(select(WRITES.c.write_id).where(WRITES.c.workitem_uid == uid)).scalar()


def apply_readiness(conn: Connection, row, change, now: datetime, study_uid: str,
                    current: dict[str, tuple] | None = None, kept: KeptInputs | None = None,
                    changed: set[str] | None = None) -> int:
    """Write a readiness change (its inputs and Input Readiness State) into the workitem `row`. Returns
    events written. `current`: the workitem's `input_values`, when the caller read them; `kept`: what
    the caller keeps of them (brought up to date here); `changed`: the only instances whose inputs can
    differ from `kept`'s (`Choices.changed_since`), None to compare them all."""
    uid = row.sop_instance_uid
    wanted = change.inputs_by_uid
    current = input_values(conn, uid) if current is None else current
    sources = kept.sources if kept is not None else {}
    stale, fresh = [], {}  # fresh: the rows to write, by SOP Instance UID
    same = []
    if changed is None:
        # Only the inputs not written from the very Input kept (an instance unchanged since the last
        # pass keeps its Input object) are looked at: found without a Python loop over the inputs.
        look = list(compress(wanted, map(is_not, map(sources.get, wanted), wanted.values())))
    else:
        look = [u for u in changed if u in wanted and sources.get(u) is not wanted[u]]
    for u in look:
        values = _input_values(wanted[u], study_uid)
        have = current.get(u)
        if have == values:
            same.append(u)
            continue
        if have is not None:
            stale.append(u)
        fresh[u] = values
    if changed is not None:
        stale += [u for u in changed if u not in wanted and u in current]
    elif len(current) > len(wanted) - len(fresh) + len(stale):  # some rows are no longer wanted
        stale += [u for u in current if u not in wanted]
    if stale:
        conn.execute(delete(INPUTS).where(INPUTS.c.workitem_uid == uid, INPUTS.c.sop_instance_uid.in_(stale)))
    if fresh:
        insert_inputs(conn, [(uid, u, *values) for u, values in fresh.items()])
    if stale or fresh:  # a process keeping this workitem's rows reads them again
        write_id = uuid.uuid4().hex
        conn.execute(_WRITE[conn.dialect.name], {"workitem": uid, "write_id": write_id})
        if kept is not None:
            kept.write_id = write_id
    if kept is not None:
        for u in stale:
            kept.values.pop(u, None)
            kept.sources.pop(u, None)
        kept.values.update(fresh)  # `same` rows are kept as they are
        for u in (*fresh, *same):
            kept.sources[u] = wanted[u]
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


# The input rows' tuples: the workitem, the instance, then `_input_values`, in the table's order.
INPUT_ROW = ("workitem_uid", "sop_instance_uid", "sop_class_uid", "study_instance_uid", "series_instance_uid",
             "retrieve_ae_title", "retrieve_url", "file_set_id", "file_set_uid")


def insert_inputs(conn: Connection, rows: list[tuple]) -> None:
    """Insert input rows (tuples in `INPUT_ROW`'s order) without SQLAlchemy's work per row: a pass
    writes one per instance new to the study, for each workitem watching it."""
    if conn.dialect.name == "postgresql":
        conn.execute(_ARRAY_INSERT, dict(zip(array_names("r", INPUT_ROW), map(list, zip(*rows)))))
    else:
        conn.exec_driver_sql(_row_insert(conn.dialect), rows)


@lru_cache(maxsize=None)
def _row_insert(dialect) -> str:
    return positional_sql(INPUTS.insert(), dialect, INPUT_ROW)


_ROWS = unnest("r", INPUT_ROW)
_ARRAY_INSERT = postgresql.insert(INPUTS).from_select(list(INPUT_ROW), select(*(_ROWS.c[n] for n in INPUT_ROW)))


def _write_statement(dialect):
    stmt = dialect.insert(WRITES).values(workitem_uid=bindparam("workitem"), write_id=bindparam("write_id"))
    return stmt.on_conflict_do_update(index_elements=[WRITES.c.workitem_uid],
                                      set_={"write_id": stmt.excluded.write_id})


_WRITE = {"postgresql": _write_statement(postgresql), "sqlite": _write_statement(sqlite)}
