"""The SQL of UPS C-FIND matching: a parsed `Query` (workflow.ups.rules.matching) becomes one SELECT of
`workitem` rows whose WHERE holds every condition, so all matching runs in the database.

* single value: `=` (PN: `lower(column) = lower(:value)`, folded by the database on both sides);
* DA/DT/TM single value and range: `>=` / `<=` on the normalised text columns;
* wild card: `LIKE ... ESCAPE '!'` with `*` -> `%`, `?` -> `_` and a literal `%`, `_`, `!` escaped. SQLite's
  LIKE ignores ASCII case, so on SQLite the same element compiles to `GLOB` (case-sensitive; `*` and `?`
  are its own wild cards and a literal `[` is written `[[]`); a case-insensitive one (PN) with a literal
  prefix also gets that prefix as a range of lower(column), which SQLite's index on lower(patient_name)
  serves (SQLite uses an index for GLOB only on a bare column; PostgreSQL does it for LIKE itself);
* list of UIDs: `IN`;
* sequence: `EXISTS` over `workitem_seq_item`, one alias per item key, all joined on (workitem_uid,
  sequence_tag, item_index) so that every key holds in the SAME item, any item of the sequence; keys of a
  nested sequence (dotted keys) are also joined on value_index, i.e. the same nested item;
* universal: nothing.
Rows come in (scheduled_start_datetime, sop_instance_uid) order, stable for paging.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, String, and_, bindparam, exists, false, func, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean

from workflow.ups.rules.matching import (
    COLUMN,
    CONSTANT,
    DATE_TIME_VRS,
    NESTED,
    RANGE,
    SEQ,
    SINGLE,
    UID_LIST,
    UNIVERSAL,
    WILDCARD,
    WRAPPER,
    Condition,
    Query,
)
from workflow.ups.tables import Workitem, WorkitemSeqItem

LIKE_ESCAPE = "!"

_workitem = Workitem.__table__
_seq_item = WorkitemSeqItem.__table__


def matching_select(query: Query, *, limit: int | None = None, offset: int | None = None) -> Select:
    """SELECT the Workitem rows matching every condition of `query`, in (scheduled start, UID) order."""
    stmt = select(Workitem).where(*[_condition(c) for c in query.active])
    stmt = stmt.order_by(Workitem.scheduled_start_datetime, Workitem.sop_instance_uid)
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return stmt


def _condition(cond: Condition) -> ColumnElement[bool]:
    key = cond.key
    if key.storage == COLUMN:
        return value_predicate(cond, _workitem.c[key.column])
    if key.storage == CONSTANT:
        # Not row filtering: the value is the same for every workitem, so the answer is known now.
        return true() if _constant_matches(cond, key.constant) else false()
    if key.storage == SEQ:
        return _sequence_exists(cond)
    if key.storage == WRAPPER:
        # A single-item sequence whose sequences are indexed on their own: all must match.
        return and_(true(), *[_condition(c) for c in cond.active_nested])
    raise ValueError(f"cannot match {key.keyword} at the top level")  # ITEM / NESTED live in a sequence


def value_predicate(cond: Condition, column: Any) -> ColumnElement[bool]:
    """The predicate of a non-sequence condition on a text column (a Workitem column or
    workitem_seq_item.value)."""
    if cond.vr in DATE_TIME_VRS and cond.kind in (SINGLE, RANGE):
        lower, upper = cond.bounds
        parts = []
        if lower is not None:
            parts.append(column >= lower)
        if upper is not None:
            parts.append(column <= upper)
        return and_(*parts)
    if cond.kind == SINGLE:
        if cond.case_insensitive:
            return func.lower(column) == func.lower(bindparam(None, cond.values[0], type_=String))
        return column == cond.values[0]
    if cond.kind == UID_LIST:
        return column.in_(cond.values)
    if cond.kind == WILDCARD:
        return WildcardMatch(column, cond.values[0], cond.case_insensitive)
    raise ValueError(f"no value predicate for a {cond.kind} condition")


def _sequence_exists(cond: Condition) -> ColumnElement[bool]:
    """EXISTS an item of the sequence in which every item key matches."""
    leaves: list[tuple[Condition, int | None]] = []  # (leaf condition, nested group)
    for group, sub in enumerate(cond.active_nested):
        if sub.key.storage == NESTED:
            leaves.extend((leaf, group) for leaf in sub.active_nested)
        else:
            leaves.append((sub, None))
    sequence_tag = cond.key.sequence_tag
    first = None
    group_alias: dict[int, Any] = {}
    from_clause = None
    where: list[ColumnElement[bool]] = []
    for leaf, group in leaves:
        alias = _seq_item.alias()
        where += [alias.c.sequence_tag == sequence_tag, alias.c.key == leaf.key.seq_key,
                  value_predicate(leaf, alias.c.value)]
        if first is None:
            first = alias
            from_clause = alias
            where.append(alias.c.workitem_uid == _workitem.c.sop_instance_uid)
        else:
            on = [alias.c.workitem_uid == first.c.workitem_uid,
                  alias.c.sequence_tag == first.c.sequence_tag,
                  alias.c.item_index == first.c.item_index]
            if group is not None and group in group_alias:
                on.append(alias.c.value_index == group_alias[group].c.value_index)
            from_clause = from_clause.join(alias, and_(*on))
        if group is not None:
            group_alias.setdefault(group, alias)
    if first is None:  # only universal item keys (parse_query makes this a universal condition)
        return true()
    return exists(select(first.c.item_index).select_from(from_clause).where(*where))


def _constant_matches(cond: Condition, constant: str | None) -> bool:
    if cond.kind in (SINGLE, UID_LIST):
        return constant in cond.values
    if cond.kind == UNIVERSAL:
        return True
    raise ValueError(f"no constant predicate for a {cond.kind} condition")


# ---------------------------------------------------------------------------------------------------
# Wild card matching, compiled per dialect


def like_pattern(value: str) -> str:
    """A DICOM wild card value as a LIKE pattern with ESCAPE '!'."""
    escaped = (value.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
               .replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_"))
    return escaped.replace("*", "%").replace("?", "_")


def glob_pattern(value: str) -> str:
    """A DICOM wild card value as an SQLite GLOB pattern (`*` and `?` are GLOB's own wild cards)."""
    return value.replace("[", "[[]")


# SQLite's built-in lower() folds ASCII letters only.
_SQLITE_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def folded_prefix_range(value: str) -> tuple[str | None, str | None]:
    """(lowest, above) such that every text whose SQLite lower() matches the wild card `value` folded
    the same way lies in lowest <= text < above (BINARY order: UTF-8 bytes, i.e. code points); None
    where the wild card gives no bound."""
    prefix = value[:min((i for i in (value.find("*"), value.find("?")) if i >= 0), default=len(value))]
    if not prefix:
        return None, None
    prefix = prefix.translate(_SQLITE_LOWER)
    after = ord(prefix[-1]) + 1
    if 0xD800 <= after <= 0xDFFF:  # surrogates are not characters: the next one is U+E000
        after = 0xE000
    return prefix, (prefix[:-1] + chr(after) if after <= 0x10FFFF else None)


class WildcardMatch(ColumnElement[bool]):
    """`column` matches the DICOM wild card `value` (case-insensitive when asked: lower() both sides)."""

    __visit_name__ = "dicom_wildcard_match"
    type = Boolean()
    # A comparison: without this SQLAlchemy writes "(... GLOB ...) = 1" on SQLite, which hides the GLOB
    # and the range from SQLite's planner (no index for either).
    _is_implicitly_boolean = True
    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("like", InternalTraversal.dp_clauseelement),
        ("glob", InternalTraversal.dp_clauseelement),
        ("bounds", InternalTraversal.dp_clauseelement_tuple),
    ]

    def __init__(self, column: Any, value: str, case_insensitive: bool = False) -> None:
        like = bindparam(None, like_pattern(value), type_=String)
        glob = bindparam(None, glob_pattern(value), type_=String)
        self.bounds: tuple = ()
        if case_insensitive:
            column, like, glob = func.lower(column), func.lower(like), func.lower(glob)
            lowest, above = folded_prefix_range(value)
            if lowest is not None:
                self.bounds = (column >= bindparam(None, lowest, type_=String),)
            if above is not None:
                self.bounds += (column < bindparam(None, above, type_=String),)
        self.column, self.like, self.glob = column, like, glob


@compiles(WildcardMatch)
def _compile_like(element: WildcardMatch, compiler, **kw) -> str:
    return (f"({compiler.process(element.column, **kw)} LIKE {compiler.process(element.like, **kw)}"
            f" ESCAPE '{LIKE_ESCAPE}')")


@compiles(WildcardMatch, "sqlite")
def _compile_glob(element: WildcardMatch, compiler, **kw) -> str:
    terms = [f"{compiler.process(element.column, **kw)} GLOB {compiler.process(element.glob, **kw)}"]
    terms += [compiler.process(bound, **kw) for bound in element.bounds]
    return f"({' AND '.join(terms)})"
