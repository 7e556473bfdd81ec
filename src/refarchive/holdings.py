"""What the reference archive holds: studies, series and SOP instances in SQLite, plus fault injection.

Three small tables rather than one wide one: a million instance rows insert in a few seconds and
stream in UID order through covering indexes (the wide layout was 3x slower on both). Removal from
operational use is a reason code on the row of the level it applies to, so each level can tell
whether it, rather than a parent, is removed (the attribute is 1C "if no higher level says Y").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta

from pydicom.uid import generate_uid

from refarchive.constants import (
    AVAILABILITY,
    CT_IMAGE_STORAGE,
    DEFAULT_UID_ROOT,
    REJECTED_FOR_QUALITY,
    instance_uid,
    series_uid,
    study_uid,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id                 INTEGER PRIMARY KEY,
    study_uid          TEXT NOT NULL UNIQUE,
    study_date         TEXT NOT NULL DEFAULT '',
    study_time         TEXT NOT NULL DEFAULT '',
    accession_number   TEXT NOT NULL DEFAULT '',
    study_id           TEXT NOT NULL DEFAULT '',
    study_description  TEXT NOT NULL DEFAULT '',
    patient_id         TEXT NOT NULL DEFAULT '',
    patient_name       TEXT NOT NULL DEFAULT '',
    patient_birth_date TEXT NOT NULL DEFAULT '',
    patient_sex        TEXT NOT NULL DEFAULT '',
    removed_reason     TEXT,             -- 'value|scheme|meaning' when removed at study level
    updated            TEXT NOT NULL     -- Study Update DateTime
);
CREATE TABLE IF NOT EXISTS series (
    id             INTEGER PRIMARY KEY,
    series_uid     TEXT NOT NULL UNIQUE,
    study          INTEGER NOT NULL REFERENCES studies(id),
    series_number  INTEGER,
    modality       TEXT NOT NULL DEFAULT '',
    removed_reason TEXT
);
CREATE TABLE IF NOT EXISTS instances (
    id               INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL UNIQUE,
    series           INTEGER NOT NULL REFERENCES series(id),
    sop_class_uid    TEXT NOT NULL,
    instance_number  INTEGER,
    availability     INTEGER NOT NULL DEFAULT 0,  -- index into AVAILABILITY: MAX() = least available
    retrieve_ae      TEXT NOT NULL DEFAULT '',
    retrieve_url     TEXT NOT NULL DEFAULT '',
    removed_reason   TEXT
);
-- UID order at every level: the order inventories and C-FIND responses come out in.
CREATE INDEX IF NOT EXISTS series_tree ON series(study, series_uid);
CREATE INDEX IF NOT EXISTS instances_tree ON instances(series, sop_instance_uid);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

STUDY_COLUMNS = ("study_date", "study_time", "accession_number", "study_id", "study_description",
                 "patient_id", "patient_name", "patient_birth_date", "patient_sex")
SERIES_COLUMNS = ("series_number", "modality")
INSTANCE_COLUMNS = ("sop_class_uid", "instance_number", "availability", "retrieve_ae", "retrieve_url")


def now_dt() -> str:
    """DICOM DT, to the second (local time, no offset)."""
    return datetime.now().strftime("%Y%m%d%H%M%S")


@dataclass
class Instance:
    """One SOP instance as stored or announced (availability is a name from AVAILABILITY)."""

    sop_instance_uid: str
    series_uid: str
    study_uid: str
    sop_class_uid: str = CT_IMAGE_STORAGE
    instance_number: int | None = None
    series_number: int | None = None
    modality: str = "OT"
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_description: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    availability: str = "ONLINE"
    retrieve_ae: str = ""
    retrieve_url: str = ""
    updated: str = field(default_factory=now_dt)


FLAT_SELECT = """
SELECT i.sop_instance_uid, se.series_uid, st.study_uid, i.sop_class_uid, i.instance_number, se.series_number,
       se.modality, st.study_date, st.study_time, st.accession_number, st.study_id, st.study_description,
       st.patient_id, st.patient_name, st.patient_birth_date, st.patient_sex, i.availability, i.retrieve_ae,
       i.retrieve_url, st.updated, st.removed_reason, se.removed_reason, i.removed_reason
FROM instances i JOIN series se ON i.series = se.id JOIN studies st ON se.study = st.id
"""


def encode_reason(code: tuple[str, str, str]) -> str:
    return "|".join(code)


def decode_reason(text: str | None) -> tuple[str, str, str]:
    parts = (text or "").split("|")
    return tuple(parts) if len(parts) == 3 else REJECTED_FOR_QUALITY  # type: ignore[return-value]


@dataclass(frozen=True)
class SeedResult:
    """The UIDs a seed() call made. k, s, i are 0-based within the call; study k has number
    first_study + k, and series and instances are numbered from 1 in the UIDs."""

    root: str
    first_study: int
    studies: int
    series_per_study: int
    instances_per_series: int

    @property
    def instance_count(self) -> int:
        return self.studies * self.series_per_study * self.instances_per_series

    def study_uid(self, k: int) -> str:
        return study_uid(self.root, self.first_study + k)

    def series_uid(self, k: int, s: int = 0) -> str:
        return series_uid(self.root, self.first_study + k, s + 1)

    def instance_uid(self, k: int, s: int = 0, i: int = 0) -> str:
        return instance_uid(self.root, self.first_study + k, s + 1, i + 1)

    @property
    def study_uids(self) -> list[str]:
        return [self.study_uid(k) for k in range(self.studies)]


class Holdings:
    """The archive's holdings in one SQLite file (a temporary one when `path` is None).

    One shared connection, guarded by a lock, does the writes and short reads; long streaming reads
    (inventory production, C-FIND) take their own connection from reader(), so in WAL mode they see
    one consistent snapshot while stores and fault injection go on.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, default_retrieve_ae: str = "REFARCH",
                 uid_root: str = DEFAULT_UID_ROOT) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix="refarchive-") if path is None else None
        self.path = os.fspath(path) if path is not None else os.path.join(self._tmpdir, "holdings.db")
        self.default_retrieve_ae = default_retrieve_ae
        self.uid_root = uid_root
        self._lock = threading.RLock()
        self._conn = self.connect()
        self.ensure_schema(SCHEMA)

    def ensure_schema(self, script: str) -> None:
        """Run CREATE ... IF NOT EXISTS statements (other modules keep their tables in this file)."""
        with self._lock:
            self._conn.executescript(script)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # A test archive: losing the last transactions on a power cut is fine; slowness is not.
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A private connection for one long read: one transaction, so one snapshot."""
        conn = self.connect()
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The shared connection inside one write transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    # -- adding instances ------------------------------------------------------------------------

    def add_instances(self, instances: Iterable[Instance]) -> int:
        """Store instances (a re-stored SOP Instance UID replaces the old row). Study and series
        attributes given as '' keep their stored values. Returns how many were given."""
        count = 0
        with self.write() as conn:
            studies: dict[str, int] = {}
            series: dict[str, int] = {}
            for inst in instances:
                count += 1
                values = asdict(inst)
                values["availability"] = AVAILABILITY.index(values["availability"])
                values["retrieve_ae"] = values["retrieve_ae"] or self.default_retrieve_ae
                study_id = studies.get(inst.study_uid)
                if study_id is None:
                    cols = ("study_uid", *STUDY_COLUMNS, "updated")
                    keep = ", ".join(f"{c} = COALESCE(NULLIF(excluded.{c}, ''), {c})" for c in STUDY_COLUMNS)
                    study_id = studies[inst.study_uid] = conn.execute(
                        f"INSERT INTO studies ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                        f"ON CONFLICT(study_uid) DO UPDATE SET {keep}, updated = excluded.updated RETURNING id",
                        [values[c] for c in cols]).fetchone()[0]
                series_id = series.get(inst.series_uid)
                if series_id is None:
                    series_id = series[inst.series_uid] = conn.execute(
                        "INSERT INTO series (series_uid, study, series_number, modality) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(series_uid) DO UPDATE SET "
                        "series_number = COALESCE(excluded.series_number, series_number), "
                        "modality = COALESCE(NULLIF(excluded.modality, ''), modality) RETURNING id",
                        (inst.series_uid, study_id, inst.series_number, inst.modality)).fetchone()[0]
                cols = ("sop_instance_uid", *INSTANCE_COLUMNS)
                conn.execute(
                    f"INSERT INTO instances (series, {', '.join(cols)}) VALUES (?, {', '.join('?' * len(cols))}) "
                    f"ON CONFLICT(sop_instance_uid) DO UPDATE SET series = excluded.series, "
                    + ", ".join(f"{c} = excluded.{c}" for c in INSTANCE_COLUMNS) + ", removed_reason = NULL",
                    [series_id, *(values[c] for c in cols)])
            for uid in studies:
                conn.execute("UPDATE studies SET updated = ? WHERE study_uid = ?", (now_dt(), uid))
        return count

    def add_instance(self, **attrs) -> Instance:
        """Add one instance; UIDs that are not given are generated. Returns what was stored."""
        attrs.setdefault("study_uid", generate_uid())
        attrs.setdefault("series_uid", generate_uid())
        attrs.setdefault("sop_instance_uid", generate_uid())
        inst = Instance(**attrs)
        self.add_instances([inst])
        return inst

    def add_unannounced(self, *, study_uid: str | None = None, series_uid: str | None = None,
                        **attrs) -> Instance:
        """Fault: an instance nobody announced, in a new study or an existing study/series (whose
        stored attributes it takes, so only the instance is new)."""
        base: dict = {}
        if series_uid or study_uid:
            where = "se.series_uid = ?" if series_uid else "st.study_uid = ?"
            rows = self.query(FLAT_SELECT + f" WHERE {where} LIMIT 1", (series_uid or study_uid,))
            if rows:
                base = dict(zip([f.name for f in fields(Instance)], rows[0][:20]))
                base["availability"] = AVAILABILITY[base["availability"]]
                base.pop("sop_instance_uid")
                base.pop("instance_number")
                base["updated"] = now_dt()
                if not series_uid:
                    base.pop("series_uid")
                    base.pop("series_number")
        if study_uid:
            base["study_uid"] = study_uid
        if series_uid:
            base["series_uid"] = series_uid
        base.update(attrs)
        return self.add_instance(**base)

    def seed(self, studies: int, series_per_study: int = 1, instances_per_series: int = 1, *,
             modality: str = "CT", sop_class_uid: str = CT_IMAGE_STORAGE, first_study: int | None = None,
             root: str | None = None, availability: str = "ONLINE", retrieve_ae: str | None = None,
             retrieve_url: str = "", start_date: date = date(2020, 1, 1)) -> SeedResult:
        """Bulk-insert predictable holdings: study n has UID <root>.n, patient PAT<n>, accession ACC<n>,
        study date start_date + (n % 1826) days; series and instances are numbered from 1.
        Numbering continues after the previous seed unless first_study is given.
        The UIDs must be new (this is a plain INSERT)."""
        root = root or self.uid_root
        rank = AVAILABILITY.index(availability)
        ae = retrieve_ae or self.default_retrieve_ae
        updated = now_dt()
        with self.write() as conn:
            if first_study is None:
                first_study = int(self.get_meta("next_study", "1"))
            study0 = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM studies").fetchone()[0]
            series0 = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM series").fetchone()[0]
            numbers = range(first_study, first_study + studies)
            conn.executemany(
                "INSERT INTO studies (id, study_uid, study_date, study_time, accession_number, study_id, "
                "study_description, patient_id, patient_name, patient_birth_date, patient_sex, updated) "
                "VALUES (?, ?, ?, '120000', ?, ?, 'REFARCHIVE SEED', ?, ?, '19700101', 'O', ?)",
                ((study0 + k, f"{root}.{n}", (start_date + timedelta(days=n % 1826)).strftime("%Y%m%d"),
                  f"ACC{n:07d}", str(n), f"PAT{n:07d}", f"REF^PATIENT{n}", updated)
                 for k, n in enumerate(numbers)))
            conn.executemany(
                "INSERT INTO series (id, series_uid, study, series_number, modality) VALUES (?, ?, ?, ?, ?)",
                ((series0 + k * series_per_study + s, f"{root}.{n}.{s + 1}", study0 + k, s + 1, modality)
                 for k, n in enumerate(numbers) for s in range(series_per_study)))
            conn.executemany(
                "INSERT INTO instances (sop_instance_uid, series, sop_class_uid, instance_number, availability, "
                "retrieve_ae, retrieve_url) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((f"{root}.{n}.{s + 1}.{i}", series0 + k * series_per_study + s, sop_class_uid, i, rank, ae,
                  retrieve_url)
                 for k, n in enumerate(numbers) for s in range(series_per_study)
                 for i in range(1, instances_per_series + 1)))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_study', ?)",
                         (str(max(first_study + studies, int(self.get_meta("next_study", "1")))),))
        return SeedResult(root, first_study, studies, series_per_study, instances_per_series)

    # -- fault injection ------------------------------------------------------------------------

    @staticmethod
    def _target(study: str | None, series: str | None, instance: str | None) -> tuple[str, str]:
        given = [(lvl, v) for lvl, v in (("study", study), ("series", series), ("instance", instance)) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of study=, series=, instance=")
        return given[0]

    # Row selections, per target level: the ids of the rows of `table` under the target UID.
    _UNDER = {
        ("study", "studies"): "SELECT id FROM studies WHERE study_uid = ?",
        ("study", "series"): "SELECT se.id FROM series se JOIN studies st ON se.study = st.id WHERE st.study_uid = ?",
        ("study", "instances"): "SELECT i.id FROM instances i JOIN series se ON i.series = se.id "
                                "JOIN studies st ON se.study = st.id WHERE st.study_uid = ?",
        ("series", "studies"): "SELECT study FROM series WHERE series_uid = ?",
        ("series", "series"): "SELECT id FROM series WHERE series_uid = ?",
        ("series", "instances"): "SELECT i.id FROM instances i JOIN series se ON i.series = se.id "
                                 "WHERE se.series_uid = ?",
        ("instance", "studies"): "SELECT se.study FROM instances i JOIN series se ON i.series = se.id "
                                 "WHERE i.sop_instance_uid = ?",
        ("instance", "series"): "SELECT series FROM instances WHERE sop_instance_uid = ?",
        ("instance", "instances"): "SELECT id FROM instances WHERE sop_instance_uid = ?",
    }

    def _touch(self, conn: sqlite3.Connection, level: str, uid: str) -> None:
        """Study Update DateTime moves forward on every change to a study."""
        conn.execute(f"UPDATE studies SET updated = ? WHERE id IN ({self._UNDER[level, 'studies']})", (now_dt(), uid))

    def _update(self, level: str, table: str, assignments: str, params: tuple, uid: str) -> int:
        with self.write() as conn:
            self._touch(conn, level, uid)
            return conn.execute(f"UPDATE {table} SET {assignments} WHERE id IN ({self._UNDER[level, table]})",
                                (*params, uid)).rowcount

    def lose(self, *, study: str | None = None, series: str | None = None, instance: str | None = None) -> int:
        """Fault: the archive silently lost an instance, a series or a study (emptied parents go too).
        Returns the number of instances lost."""
        level, uid = self._target(study, series, instance)
        with self.write() as conn:
            self._touch(conn, level, uid)
            lost = conn.execute(f"DELETE FROM instances WHERE id IN ({self._UNDER[level, 'instances']})",
                                (uid,)).rowcount
            conn.execute("DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM instances WHERE series = series.id)")
            conn.execute("DELETE FROM studies WHERE NOT EXISTS (SELECT 1 FROM series WHERE study = studies.id)")
        return lost

    def lose_instance(self, uid: str) -> int:
        return self.lose(instance=uid)

    def lose_series(self, uid: str) -> int:
        return self.lose(series=uid)

    def lose_study(self, uid: str) -> int:
        return self.lose(study=uid)

    def set_availability(self, availability: str, *, study: str | None = None, series: str | None = None,
                         instance: str | None = None) -> int:
        """Fault: change Instance Availability of every instance under the target."""
        level, uid = self._target(study, series, instance)
        return self._update(level, "instances", "availability = ?", (AVAILABILITY.index(availability),), uid)

    def mark_removed(self, *, study: str | None = None, series: str | None = None, instance: str | None = None,
                     reason: tuple[str, str, str] = REJECTED_FOR_QUALITY) -> int:
        """Fault: Removed from Operational Use = Y on the target (reason: a DCID 7031 code)."""
        level, uid = self._target(study, series, instance)
        table = {"study": "studies", "series": "series", "instance": "instances"}[level]
        return self._update(level, table, "removed_reason = ?", (encode_reason(reason),), uid)

    def restore(self, *, study: str | None = None, series: str | None = None, instance: str | None = None) -> int:
        """Undo mark_removed on the target and everything under it."""
        level, uid = self._target(study, series, instance)
        tables = {"study": ("studies", "series", "instances"), "series": ("series", "instances"),
                  "instance": ("instances",)}[level]
        return sum(self._update(level, t, "removed_reason = NULL", (), uid) for t in tables)

    def set_retrieve(self, *, ae_title: str | None = None, url: str | None = None, study: str | None = None,
                     series: str | None = None, instance: str | None = None) -> int:
        """Fault: the instances say they are retrievable elsewhere (Retrieve AE Title and/or URL)."""
        values = {k: v for k, v in (("retrieve_ae", ae_title), ("retrieve_url", url)) if v is not None}
        if not values:
            raise ValueError("give ae_title= and/or url=")
        return self.set_attributes(study=study, series=series, instance=instance, **values)

    def set_attributes(self, *, study: str | None = None, series: str | None = None, instance: str | None = None,
                       **values) -> int:
        """Fault: change stored attributes (patient_id, accession_number, modality, ...). A study-level
        column given with a series or instance target changes that whole study. Returns rows changed."""
        level, uid = self._target(study, series, instance)
        if "availability" in values:
            values["availability"] = AVAILABILITY.index(values["availability"])
        unknown = set(values) - set(STUDY_COLUMNS) - set(SERIES_COLUMNS) - set(INSTANCE_COLUMNS)
        if unknown or not values:
            raise ValueError(f"unknown or missing columns: {sorted(unknown)}")
        changed = 0
        for table, columns in (("studies", STUDY_COLUMNS), ("series", SERIES_COLUMNS),
                               ("instances", INSTANCE_COLUMNS)):
            mine = {k: v for k, v in values.items() if k in columns}
            if mine:
                changed += self._update(level, table, ", ".join(f"{k} = ?" for k in mine), tuple(mine.values()), uid)
        return changed

    # -- reading ---------------------------------------------------------------------------------

    def count(self, *, study: str | None = None, series: str | None = None) -> int:
        """Instances held (in a study or series)."""
        if study or series:
            level, uid = self._target(study, series, None)
            return self.query(f"SELECT COUNT(*) FROM ({self._UNDER[level, 'instances']})", (uid,))[0][0]
        return self.query("SELECT COUNT(*) FROM instances")[0][0]

    def study_count(self) -> int:
        return self.query("SELECT COUNT(*) FROM studies")[0][0]

    def study_uids(self) -> list[str]:
        return [r[0] for r in self.query("SELECT study_uid FROM studies ORDER BY study_uid")]

    def instance(self, uid: str) -> dict | None:
        """One instance as a flat dict, with study_removed / series_removed / instance_removed reasons."""
        rows = self.query(FLAT_SELECT + " WHERE i.sop_instance_uid = ?", (uid,))
        if not rows:
            return None
        names = [f.name for f in fields(Instance)] + ["study_removed", "series_removed", "instance_removed"]
        values = dict(zip(names, rows[0]))
        values["availability"] = AVAILABILITY[values["availability"]]
        return values

    def get_meta(self, key: str, default: str) -> str:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default
