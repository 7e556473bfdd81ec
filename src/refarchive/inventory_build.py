"""Producing Inventory SOP instances (PS3.3 A.88.3) from the holdings.

Studies stream out of SQLite in Study Instance UID order (series and instances in UID order too),
each encoded straight to Explicit VR LE bytes (dicombytes) and appended to the current leaf; a leaf
is stored as soon as it holds `record_limit` study records, so memory stays at one leaf whatever the
archive's size. When production ends, index nodes (no study records) are stored above the leaves,
`fanout` children each, up to one root; every node lists its whole subtree in Incorporated Inventory
Instance Sequence (0008,0422). Completion status is patched into every node last (see
inventory_store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from operator import itemgetter

from pydicom.uid import generate_uid

from refarchive import dicombytes as db
from refarchive.constants import AVAILABILITY, INVENTORY_STORAGE, LEVELS
from refarchive.holdings import Holdings, decode_reason
from refarchive.inventory_store import InventoryStore, StoredInventory, completion_bytes
from refarchive.scope import Scope

_U16 = db._U16
_U32 = db._U32
_ITEM = db._ITEM_TAG

# Instance item fields (ascending tags).
_SOP_CLASS = db.short_field(0x00080016, "UI")
_H_SOP_INSTANCE = db.header(0x00080018, "UI")
_H_INSTANCE_NUMBER = db.header(0x00200013, "IS")
_AVAILABILITY = [db.element(0x00080056, "CS", a) for a in AVAILABILITY]
_REMOVED_Y = db.element(0x00080405, "CS", "Y")

_STUDY_SQL = ("SELECT id, study_uid, study_date, study_time, accession_number, study_id, study_description, "
              "patient_id, patient_name, patient_birth_date, patient_sex, removed_reason, updated "
              "FROM studies st WHERE {where} ORDER BY study_uid")
_ROWS_SQL = ("SELECT se.series_uid, se.series_number, se.modality, se.removed_reason, i.sop_instance_uid, "
             "i.sop_class_uid, i.instance_number, i.availability, i.retrieve_ae, i.retrieve_url, i.removed_reason "
             "FROM series se JOIN instances i ON i.series = se.id WHERE se.study = ? "
             "ORDER BY se.series_uid, i.sop_instance_uid")


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) & 1 else raw


def _is(number: int | None) -> bytes:
    if number is None:
        return b""
    raw = str(number).encode("ascii")
    return raw + b" " if len(raw) & 1 else raw


_REASONS: dict[str, bytes] = {}


def _removed(reason_text: str) -> bytes:
    """Removed from Operational Use = Y plus its Reason for Removal Code Sequence (one item)."""
    cached = _REASONS.get(reason_text)
    if cached is None:
        value, scheme, meaning = decode_reason(reason_text)
        code = db.join_sorted({0x00080100: db.element(0x00080100, "SH", value),
                               0x00080102: db.element(0x00080102, "SH", scheme),
                               0x00080104: db.element(0x00080104, "LO", meaning)})
        cached = _REASONS[reason_text] = _REMOVED_Y + db.sequence(0x00080406, [code])
    return cached


class StudyEncoder:
    """One study's record (an item of Inventoried Studies Sequence) at the given Inventory Level."""

    def __init__(self, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"Inventory Level must be one of {LEVELS}")
        self.level = level
        self._classes: dict[str, bytes] = {}

    def _instances(self, rows: list[tuple], parent_removed: bool) -> bytes:
        classes = self._classes
        out = []
        for r in rows:
            cls = classes.get(r[5])
            if cls is None:
                cls = classes[r[5]] = _SOP_CLASS(_ui(r[5]))
            uid = _ui(r[4])
            number = _is(r[6])
            removed = _removed(r[10]) if r[10] and not parent_removed else b""
            body = b"".join((cls, _H_SOP_INSTANCE, _U16(len(uid)), uid, _AVAILABILITY[r[7]], removed,
                             _H_INSTANCE_NUMBER, _U16(len(number)), number))
            out.append(_ITEM + _U32(len(body)) + body)
        return b"".join(out)

    def encode(self, st: tuple, rows: list[tuple], now: str) -> bytes:
        (_, study_uid, study_date, study_time, accession, study_id, description, patient_id, patient_name,
         birth_date, sex, study_removed, updated) = st
        series_items = []
        modalities: set[str] = set()
        aes: set[str] = set()
        urls: set[str] = set()
        worst = 0
        n_series = 0
        for series_uid, group in groupby(rows, key=itemgetter(0)):
            group = list(group)
            n_series += 1
            _, number, modality, series_removed, *_ = group[0]
            modalities.add(modality)
            series_worst = max(r[7] for r in group)
            worst = max(worst, series_worst)
            aes.update(r[8] for r in group)
            urls.update(r[9] for r in group)
            if self.level == "STUDY":
                continue
            parts = [_AVAILABILITY[series_worst], db.element(0x00080060, "CS", modality or "OT")]
            if series_removed and not study_removed:
                parts.append(_removed(series_removed))
            if self.level == "INSTANCE":
                parts.append(db.sequence_of_items(
                    0x00080425, self._instances(group, bool(series_removed or study_removed))))
            parts.append(db.element(0x0020000E, "UI", series_uid))
            parts.append(db.element(0x00200011, "IS", number))
            series_items.append(db.item(b"".join(parts)))

        e = db.element
        fields = {
            0x00080020: e(0x00080020, "DA", study_date),
            0x00080030: e(0x00080030, "TM", study_time),
            0x00080050: e(0x00080050, "SH", accession),
            0x00080054: e(0x00080054, "AE", sorted(a for a in aes if a)),
            0x00080056: _AVAILABILITY[worst],
            0x00080061: e(0x00080061, "CS", sorted(m for m in modalities if m)),
            0x00080404: e(0x00080404, "DT", now),
            0x0008041F: e(0x0008041F, "DT", updated),
            0x00081030: e(0x00081030, "LO", description),
            0x00100010: e(0x00100010, "PN", patient_name),
            0x00100020: e(0x00100020, "LO", patient_id),
            0x00100030: e(0x00100030, "DA", birth_date),
            0x00100040: e(0x00100040, "CS", sex),
            0x0020000D: e(0x0020000D, "UI", study_uid),
            0x00200010: e(0x00200010, "SH", study_id),
            0x00201206: e(0x00201206, "IS", n_series),
            0x00201208: e(0x00201208, "IS", len(rows)),
        }
        if study_removed:
            fields[0x00080405] = _removed(study_removed)  # (0008,0405) and (0008,0406) together
        if self.level != "STUDY":
            fields[0x00080424] = db.sequence_of_items(0x00080424, b"".join(series_items))
        if len(urls) == 1 and "" not in urls:
            # Retrieve URL has VM 1: given only when every instance shares one.
            fields[0x00081190] = e(0x00081190, "UR", urls.pop())
        return db.item(db.join_sorted(fields))


@dataclass
class InventoryRequest:
    """What to produce. completion is the status stamped when production ends normally (including
    after max_studies, which is how a PARTIAL inventory is made on purpose)."""

    level: str = "STUDY"
    scope: Scope = field(default_factory=Scope)
    purpose: str = ""
    description: str | None = None
    transaction_uid: str | None = None
    record_limit: int = 1000
    fanout: int = 100
    completion: str = "COMPLETE"
    max_studies: int | None = None


@dataclass
class BuiltInventory:
    root_uid: str
    instance_uids: list[str]  # root first
    total_records: int
    completion: str
    level: str
    transaction_uid: str | None
    comment: str = ""
    seconds: float = 0.0


class Stop(Exception):
    """Raised by a checkpoint to end production early: the nodes are kept (with `completion`)
    when retain is true, deleted otherwise."""

    def __init__(self, completion: str, retain: bool, comment: str = "") -> None:
        super().__init__(comment or completion)
        self.completion = completion
        self.retain = retain
        self.comment = comment


@dataclass
class _Node:
    uid: str
    total: int
    children: list[_Node] = field(default_factory=list)


def _reference(node: _Node) -> bytes:
    """An Inventory Reference macro item, with the referenced node's own subtree nested."""
    fields = {0x00081150: db.element(0x00081150, "UI", INVENTORY_STORAGE),
              0x00081155: db.element(0x00081155, "UI", node.uid)}
    if node.children:
        fields[0x00080422] = db.sequence_of_items(0x00080422, b"".join(_reference(c) for c in node.children))
    return db.item(db.join_sorted(fields))


class InventoryBuilder:
    """Builds one inventory tree and stores its nodes. `checkpoint(records_so_far)` is called after
    every study record; it may sleep (pause) or raise Stop."""

    def __init__(self, holdings: Holdings, store: InventoryStore, request: InventoryRequest, *,
                 ae_title: str, checkpoint: Callable[[int], None] | None = None) -> None:
        if request.record_limit < 1 or request.fanout < 2:
            raise ValueError("record_limit must be >= 1 and fanout >= 2")
        self.holdings = holdings
        self.store = store
        self.request = request
        self.ae_title = ae_title
        self.checkpoint = checkpoint
        self.encoder = StudyEncoder(request.level)
        self.records = 0  # produced so far; read by other threads for status reports
        started = datetime.now()
        self.content_date = started.strftime("%Y%m%d")
        self.content_time = started.strftime("%H%M%S")
        scope_item = request.scope.to_item()
        self._scope = db.sequence(0x00080400, [db.pydicom_body(scope_item)] if scope_item is not None else [])
        self._stored: list[str] = []

    def study_records(self) -> Iterator[bytes]:
        where = self.request.scope.where("st")
        with self.holdings.reader() as conn:
            studies = conn.execute(_STUDY_SQL.format(where=where.sql), where.params)
            for st in studies:
                rows = conn.execute(_ROWS_SQL, (st[0],)).fetchall()
                if rows:
                    yield self.encoder.encode(st, rows, datetime.now().strftime("%Y%m%d%H%M%S"))

    def run(self) -> BuiltInventory:
        t0 = time.monotonic()
        req = self.request
        leaves: list[_Node] = []
        current: list[bytes] = []
        completion, comment = req.completion, ""
        try:
            for record in self.study_records():
                current.append(record)
                self.records += 1
                if len(current) >= req.record_limit:
                    leaves.append(self._store_node(current, []))
                    current = []
                if req.max_studies is not None and self.records >= req.max_studies:
                    break
                if self.checkpoint:
                    self.checkpoint(self.records)
        except Stop as stop:
            if not stop.retain:
                self.store.delete(self._stored)
                raise
            completion, comment = stop.completion, stop.comment
        except BaseException:
            self.store.delete(self._stored)
            raise
        if current or not leaves:
            leaves.append(self._store_node(current, []))
        nodes = leaves
        while len(nodes) > 1:
            groups = [nodes[i:i + req.fanout] for i in range(0, len(nodes), req.fanout)]
            # A lone last child moves up a level rather than getting an index node of its own.
            nodes = [g[0] if len(g) == 1 else self._store_node([], g) for g in groups]
        root = nodes[0]
        uids = [root.uid] + [u for u in self._stored if u != root.uid]
        self.store.set_root(uids, root.uid)
        self.store.set_completion(uids, completion)
        return BuiltInventory(root.uid, uids, root.total, completion, req.level, req.transaction_uid, comment,
                              time.monotonic() - t0)

    def _store_node(self, records: list[bytes], children: list[_Node]) -> _Node:
        uid = generate_uid()
        node = _Node(uid, len(records) + sum(c.total for c in children), children)
        req = self.request
        e = db.element
        now = datetime.now()
        endpoint = db.element(0x00080054, "AE", self.ae_title)
        fields = {
            0x00080005: e(0x00080005, "CS", "ISO_IR 192"),
            0x00080012: e(0x00080012, "DA", now.strftime("%Y%m%d")),
            0x00080013: e(0x00080013, "TM", now.strftime("%H%M%S")),
            0x00080016: e(0x00080016, "UI", INVENTORY_STORAGE),
            0x00080018: e(0x00080018, "UI", uid),
            0x00080023: e(0x00080023, "DA", self.content_date),
            0x00080033: e(0x00080033, "TM", self.content_time),
            0x00080070: e(0x00080070, "LO", "refarchive"),
            0x00080400: self._scope,
            0x00080401: e(0x00080401, "LT", req.purpose),
            0x00080403: e(0x00080403, "CS", req.level),
            0x00080420: db.sequence(0x00080420, [endpoint]),
            0x00080422: db.sequence_of_items(0x00080422, b"".join(_reference(c) for c in children)),
            0x00080423: db.sequence_of_items(0x00080423, b"".join(records)),
            0x00080426: e(0x00080426, "CS", completion_bytes("PARTIAL").decode()),
            0x00080427: e(0x00080427, "UL", len(records)),
            0x00080428: e(0x00080428, "UV", node.total),
            0x00081090: e(0x00081090, "LO", "REFARCHIVE"),
            0x00181020: e(0x00181020, "LO", "refarchive 1"),
        }
        if req.description:
            fields[0x00080402] = e(0x00080402, "LT", req.description)
        if req.transaction_uid:
            fields[0x00081195] = e(0x00081195, "UI", req.transaction_uid)
        meta = db.file_meta(INVENTORY_STORAGE, uid, self.ae_title)
        offset = len(meta)
        for tag in sorted(fields):
            if tag == 0x00080426:
                offset += 8  # tag, VR, 2-byte length
                break
            offset += len(fields[tag])
        data = meta + db.join_sorted(fields)
        self.store.put(StoredInventory(uid, req.transaction_uid, self.content_date, self.content_time, req.purpose,
                                       req.description or "", req.level, "PARTIAL", len(records), node.total, None),
                       data, offset)
        self._stored.append(uid)
        return node
