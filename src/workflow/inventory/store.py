"""The built inventories as Inventory Q/R (PS3.4 JJ) sees them: FIND matching on the node's columns,
the Part 10 bytes of a node for GET/MOVE, and listings for the CLI.

FIND keys (Table JJ.2-1): SOP Class UID, SOP Instance UID (one or a list), Transaction UID (these
inventories were not made through Inventory Creation: a value given matches nothing), Content Date and
Content Time (single value or range), Inventory Purpose, Inventory Instance Description, Inventory
Level, Inventory Completion Status (single value, * and ? wild cards), Total Number of Study Records
(single value). Every node of a tree matches on its own attributes (JJ: any instance may be asked for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Engine, and_, false, select

from workflow.audit.rules import messages
from workflow.inventory.tables import InventoryCrawl as Crawl, InventoryNode as Node
from workflow.kernel import requestor
from workflow.kernel.ports import Audit
from workflow.store.engine import reading

N, C = Node.__table__, Crawl.__table__
INVENTORY_FIND = "1.2.840.10008.5.1.4.1.1.201.2"
STRING_KEYS = {"InventoryPurpose": N.c.purpose, "InventoryInstanceDescription": N.c.description,
               "InventoryLevel": N.c.level, "InventoryCompletionStatus": N.c.completion}
COLUMNS = (N.c.sop_instance_uid, N.c.root_uid, N.c.archive_ae_title, N.c.content_date, N.c.content_time,
           N.c.purpose, N.c.description, N.c.level, N.c.completion, N.c.records, N.c.total_records,
           N.c.scope_json, N.c.created_at)


class Unmatchable(ValueError):
    """A key value this SCP cannot match (the C-FIND answer is then A900 naming it)."""


@dataclass(frozen=True)
class Keys:
    """What an Inventory FIND identifier asks, as plain values (the adapter decodes the data set)."""

    sop_instance_uids: tuple[str, ...] = ()
    transaction_uid: str = ""
    content_date: str = ""
    content_time: str = ""
    strings: tuple[tuple[str, str], ...] = ()  # (keyword, value) of STRING_KEYS
    total_records: str = ""
    archive_ae: str | None = None  # only this archive's inventories (the called AE title named it)


def _range(column, value: str, width: int):
    if "-" not in value:
        return column == value if width == 8 else column.like(value + "%")
    low, high = value.split("-", 1)
    parts = []
    if low:
        parts.append(column >= low)
    if high:
        parts.append(column <= high + ("" if width == 8 else "\uffff"))
    return and_(*parts) if parts else None


def _string(column, value: str):
    if "*" in value or "?" in value:
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")
    return column == value


def conditions(keys: Keys) -> list:
    where = []
    if keys.archive_ae is not None:
        where.append(N.c.archive_ae_title == keys.archive_ae)
    if keys.sop_instance_uids:
        where.append(N.c.sop_instance_uid.in_(keys.sop_instance_uids))
    if keys.transaction_uid:
        where.append(false())
    for value, column, width in ((keys.content_date, N.c.content_date, 8), (keys.content_time, N.c.content_time, 6)):
        if value:
            condition = _range(column, value, width)
            if condition is not None:
                where.append(condition)
    for keyword, value in keys.strings:
        where.append(_string(STRING_KEYS[keyword], value))
    if keys.total_records:
        try:
            where.append(N.c.total_records == int(keys.total_records))
        except ValueError:
            raise Unmatchable("TotalNumberOfStudyRecords") from None
    return where


def find(engine: Engine, keys: Keys) -> Iterator[dict]:
    """The matching nodes, oldest first; each a dict of the columns, Scope of Inventory as DICOM JSON."""
    query = select(*COLUMNS).where(*conditions(keys)).order_by(N.c.content_date, N.c.content_time,
                                                              N.c.sop_instance_uid)
    with reading(engine) as conn:
        for row in conn.execute(query).mappings().all():
            yield dict(row, scope=json.loads(row["scope_json"]))


def audited_find(engine: Engine, keys: Keys, audit: Audit, identifier: bytes) -> list[dict]:
    """`find`, recorded in the audit trail (Query, 110112) once the keys are known to be matchable."""
    conditions(keys)  # raises Unmatchable before anything is recorded
    audit.record_now(messages.query(requestor.current(), INVENTORY_FIND, identifier))
    return list(find(engine, keys))


def held(engine: Engine, uids: list[str]) -> set[str]:
    with reading(engine) as conn:
        return set(conn.execute(select(N.c.sop_instance_uid).where(N.c.sop_instance_uid.in_(uids))).scalars())


def data(engine: Engine, uid: str) -> bytes | None:
    with reading(engine) as conn:
        return conn.execute(select(N.c.data).where(N.c.sop_instance_uid == uid)).scalar()


def roots(engine: Engine, archive_ae: str | None = None) -> list[dict]:
    """The inventories (their roots), newest first: `wfm inventory list`."""
    query = select(*COLUMNS).where(N.c.sop_instance_uid == N.c.root_uid)
    if archive_ae:
        query = query.where(N.c.archive_ae_title == archive_ae)
    with reading(engine) as conn:
        return [dict(r) for r in conn.execute(query.order_by(N.c.created_at.desc())).mappings()]


def crawls_running(engine: Engine) -> list[dict]:
    with reading(engine) as conn:
        return [dict(r) for r in conn.execute(select(C.c.id, C.c.archive_ae_title, C.c.scope_key, C.c.started_at)
                                              .where(C.c.status == "RUNNING")).mappings()]
