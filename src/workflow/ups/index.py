"""Copy a workitem's matching keys out of its DICOM JSON data set into the indexed columns of `workitem`
and the rows of `workitem_seq_item`, following `MATCHING_KEYS` so that what is stored is exactly what
`workflow.ups.query` matches on.

Stored text is normalised the way keys are (`workflow.ups.rules.matching`): padding stripped, PN as its
Alphabetic component group, DT as `YYYYMMDDHHMMSS.ffffff` (offset dropped), DA as `YYYYMMDD`.

`workitem_seq_item` rows, one per attribute value inside an item of a matchable sequence:
* `item_index`: the item's position (0-based) in the sequence;
* `key`: the attribute's tag, or `"SSSSSSSS.TTTTTTTT"` for attribute T inside the nested sequence S of
  that item (e.g. Code Value in Human Performer Code Sequence: "00404009.00080100");
* `value_index`: the value's position for a multi-valued attribute; for a dotted key it is the position
  of the NESTED item instead (every nested attribute indexed is VM 1, so only its first value is kept),
  which lets the matcher require all nested keys to hold in the same nested item;
* Actual Human Performers Sequence, inside the single item of UPS Performed Procedure Sequence, is
  indexed as a sequence of its own (`sequence_tag` "00404035"), items numbered across all items of the
  outer sequence.
Values longer than the `value` column (1024 characters, possible for UT) are not indexed: they cannot
match.
"""

from __future__ import annotations

from typing import Any

from workflow.ups.rules.matching import (
    COLUMN,
    DATE_TIME_VRS,
    ITEM,
    MATCHING_KEYS,
    NESTED,
    SEQ,
    WRAPPER,
    MatchingKey,
    clean_text,
    normalize,
)

MAX_SEQ_VALUE = 1024  # WorkitemSeqItem.value


def index_workitem(ds: dict[str, Any]) -> tuple[dict[str, str | None], list[dict[str, Any]]]:
    """(Workitem column values, WorkitemSeqItem rows without workitem_uid) for a workitem data set.

    The columns are those of the matching keys, except sop_instance_uid (the caller's primary key);
    a key that is absent or empty gives None. Raises ValueError when a stored DA/DT value is malformed
    (the caller validates the data set first)."""
    columns: dict[str, str | None] = {}
    rows: list[dict[str, Any]] = []
    for key in MATCHING_KEYS:
        if key.storage == COLUMN:
            if key.column != "sop_instance_uid":
                values = stored_values(ds, key)
                columns[key.column] = values[0] if values else None
        elif key.storage == SEQ:
            rows.extend(_sequence_rows(key, _items(ds, key.tag)))
        elif key.storage == WRAPPER:
            for sub in key.items:
                nested_items = [i for outer in _items(ds, key.tag) for i in _items(outer, sub.tag)]
                rows.extend(_sequence_rows(sub, nested_items))
    return columns, rows


_COLUMN_KEYS = tuple(k for k in MATCHING_KEYS if k.storage == COLUMN and k.column != "sop_instance_uid")
_SEQUENCE_TAGS = tuple(k.tag for k in MATCHING_KEYS if k.storage in (SEQ, WRAPPER))


def changed_columns(before: dict[str, Any], after: dict[str, Any]) -> dict[str, str | None]:
    """The column values of `after` (as `index_workitem` gives them) for the keys whose element is not
    the same as in `before`: an update rewrites only these (a claim changes one of ~30)."""
    out: dict[str, str | None] = {}
    for key in _COLUMN_KEYS:
        if before.get(key.tag) != after.get(key.tag):
            values = stored_values(after, key)
            out[key.column] = values[0] if values else None
    return out


def sequences_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether any matchable sequence differs, so that its `workitem_seq_item` rows must be rewritten."""
    return any(before.get(tag) != after.get(tag) for tag in _SEQUENCE_TAGS)


def _sequence_rows(key: MatchingKey, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for item_index, item in enumerate(items):
        for sub in key.items:
            if sub.storage == ITEM:
                for value_index, value in enumerate(stored_values(item, sub)):
                    if len(value) <= MAX_SEQ_VALUE:
                        rows.append(_row(key.tag, item_index, sub.seq_key, value_index, value))
            elif sub.storage == NESTED:
                for nested_index, nested in enumerate(_items(item, sub.tag)):
                    for leaf in sub.items:
                        values = stored_values(nested, leaf)
                        if values and len(values[0]) <= MAX_SEQ_VALUE:
                            rows.append(_row(key.tag, item_index, leaf.seq_key, nested_index, values[0]))
    return rows


def _row(sequence_tag: str, item_index: int, key: str, value_index: int, value: str) -> dict[str, Any]:
    return {"sequence_tag": sequence_tag, "item_index": item_index, "key": key,
            "value_index": value_index, "value": value}


def stored_values(ds: dict[str, Any], key: MatchingKey) -> list[str]:
    """The non-empty values of a non-sequence key in `ds`, as stored (normalised text)."""
    element = ds.get(key.tag)
    if not isinstance(element, dict):
        return []
    out: list[str] = []
    for value in element.get("Value") or ():
        if key.vr == "PN" and isinstance(value, dict):
            value = value.get("Alphabetic")
        if value is None:
            continue
        text = clean_text(key.vr, value if isinstance(value, str) else str(value))
        if not text:
            continue
        if key.vr in DATE_TIME_VRS:
            text = normalize(key.vr, text)
        out.append(text)
    return out


def _items(ds: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    element = ds.get(tag)
    if not isinstance(element, dict):
        return []
    return [i for i in element.get("Value") or () if isinstance(i, dict)]
