"""The Inventory SOP instances the archive keeps: encoded Part 10 bytes plus the attributes that
Inventory FIND matches on, in the holdings' SQLite file.

Built inventories are written node by node while production runs, with Inventory Completion Status
PARTIAL ("production is still continuing"); when it ends, the 8-byte value is overwritten in place
(every completion value pads to 8 bytes), so no node has to be held or re-encoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmread

from refarchive.holdings import Holdings, now_dt
from refarchive.matching import Where

SCHEMA = """
CREATE TABLE IF NOT EXISTS inventories (
    sop_instance_uid  TEXT PRIMARY KEY,
    transaction_uid   TEXT,
    content_date      TEXT NOT NULL DEFAULT '',
    content_time      TEXT NOT NULL DEFAULT '',
    purpose           TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    level             TEXT NOT NULL DEFAULT '',
    completion        TEXT NOT NULL DEFAULT '',
    records           INTEGER NOT NULL DEFAULT 0,   -- Number of Study Records in Instance
    total_records     INTEGER NOT NULL DEFAULT 0,   -- Total Number of Study Records (subtree)
    root_uid          TEXT,                          -- root of the tree, for the ones built here
    completion_offset INTEGER,                       -- byte offset of the completion value
    stored            TEXT NOT NULL,
    data              BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS inventories_transaction ON inventories(transaction_uid);
"""

COMPLETION_WIDTH = 8


def completion_bytes(completion: str) -> bytes:
    raw = completion.encode("ascii").ljust(COMPLETION_WIDTH)
    if len(raw) != COMPLETION_WIDTH:
        raise ValueError(f"completion status {completion!r} does not fit in place")
    return raw


@dataclass
class StoredInventory:
    sop_instance_uid: str
    transaction_uid: str | None
    content_date: str
    content_time: str
    purpose: str
    description: str
    level: str
    completion: str
    records: int
    total_records: int
    root_uid: str | None


_META = ("sop_instance_uid", "transaction_uid", "content_date", "content_time", "purpose", "description",
         "level", "completion", "records", "total_records", "root_uid")


class InventoryStore:
    def __init__(self, holdings: Holdings) -> None:
        self.holdings = holdings
        holdings.ensure_schema(SCHEMA)

    def put(self, meta: StoredInventory, data: bytes, completion_offset: int | None = None) -> None:
        with self.holdings.write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO inventories ({', '.join(_META)}, completion_offset, stored, data) "
                f"VALUES ({', '.join('?' * (len(_META) + 3))})",
                (*(getattr(meta, k) for k in _META), completion_offset, now_dt(), data))

    def put_received(self, data: bytes) -> StoredInventory:
        """An Inventory instance received by C-STORE: kept whole, indexed by its top-level attributes.
        Only the top level is parsed (pydicom leaves the big sequences undecoded until touched)."""
        ds = dcmread(io.BytesIO(data), force=True)
        meta = StoredInventory(
            sop_instance_uid=str(ds.SOPInstanceUID), transaction_uid=str(ds.get("TransactionUID", "")) or None,
            content_date=str(ds.get("ContentDate", "")), content_time=str(ds.get("ContentTime", "")),
            purpose=str(ds.get("InventoryPurpose", "")), description=str(ds.get("InventoryInstanceDescription", "")),
            level=str(ds.get("InventoryLevel", "")), completion=str(ds.get("InventoryCompletionStatus", "")),
            records=int(ds.get("NumberOfStudyRecordsInInstance", 0) or 0),
            total_records=int(ds.get("TotalNumberOfStudyRecords", 0) or 0), root_uid=None)
        self.put(meta, data)
        return meta

    def set_completion(self, uids: list[str], completion: str) -> None:
        """Rewrite Inventory Completion Status in place in the nodes built here."""
        raw = completion_bytes(completion)
        with self.holdings.write() as conn:
            for uid in uids:
                row = conn.execute("SELECT rowid, completion_offset FROM inventories WHERE sop_instance_uid = ?",
                                   (uid,)).fetchone()
                if row is None or row[1] is None:
                    continue
                with conn.blobopen("inventories", "data", row[0]) as blob:
                    blob.seek(row[1])
                    blob.write(raw)
                conn.execute("UPDATE inventories SET completion = ? WHERE rowid = ?", (completion, row[0]))

    def set_root(self, uids: list[str], root_uid: str) -> None:
        with self.holdings.write() as conn:
            conn.executemany("UPDATE inventories SET root_uid = ? WHERE sop_instance_uid = ?",
                             [(root_uid, u) for u in uids])

    def delete(self, uids: list[str]) -> None:
        with self.holdings.write() as conn:
            conn.executemany("DELETE FROM inventories WHERE sop_instance_uid = ?", [(u,) for u in uids])

    def data(self, uid: str) -> bytes | None:
        rows = self.holdings.query("SELECT data FROM inventories WHERE sop_instance_uid = ?", (uid,))
        return rows[0][0] if rows else None

    def dataset(self, uid: str):
        """The stored instance as a pydicom Dataset whose sequences stay raw bytes until touched:
        re-encoding it in Explicit VR Little Endian for C-STORE then just copies them."""
        raw = self.data(uid)
        return dcmread(io.BytesIO(raw)) if raw is not None else None

    def get(self, uid: str) -> StoredInventory | None:
        rows = self.holdings.query(f"SELECT {', '.join(_META)} FROM inventories WHERE sop_instance_uid = ?", (uid,))
        return StoredInventory(*rows[0]) if rows else None

    def find(self, where: Where | None = None) -> list[StoredInventory]:
        where = where or Where()
        rows = self.holdings.query(
            f"SELECT {', '.join(_META)} FROM inventories WHERE {where.sql} ORDER BY content_date, content_time, "
            f"sop_instance_uid", where.params)
        return [StoredInventory(*r) for r in rows]

    def tree(self, root_uid: str) -> list[StoredInventory]:
        """Every node of a tree built here, root included."""
        w = Where()
        w.add("root_uid = ? OR sop_instance_uid = ?", root_uid, root_uid)
        return self.find(w)
