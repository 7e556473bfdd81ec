#!/usr/bin/env python3
"""UPS worklist C-FIND latency and claim throughput: `wfm serve` on SQLite and PostgreSQL holding
100,000 SCHEDULED and 1,000,000 finished workitems, against a baseline measured in the same run, a bare
pynetdicom UPS SCP whose handlers yield precomputed answers (the same matches, the same identifiers,
captured from our server) or return Success at once. Our ratio to that baseline is what our matching,
store and DICOM JSON cost on top of pynetdicom's own C-FIND / N-ACTION cost. Target: p95 <= 100 ms.
The baseline runs on the transport `wfm serve` ships (pynetdicom's reactors event-driven,
src/workflow/dimse/event_driven.py), so the ratio is the handlers' cost alone, not transport.
Claims are also timed against a second baseline, the least a durable claim handler does (decode the
Action Information, lock the row, check the state, update it, commit durably, with the raw driver on the
same backend): how much of the gap to the bare SCP is durability, and how much is ours. The three
servers claim in turns, all three running: `--rounds` rounds (5), each server claiming its share of
the round in an order rotated from round to round, so that a machine drifting over minutes weighs on
all of them alike; a ratio is the median of its rounds' ratios, printed with the lowest and highest.

    python bench/ups_find.py             # full size, by hand: ~20 min on 2 cores (seeding ~5 min a backend)
    python bench/ups_find.py --smoke     # tiny, to keep the script working (the test suite runs it)
    python bench/ups_find.py --scheduled 100000 --finished 300000 --backend sqlite --explain

Seeding goes straight to the store, not over DIMSE: after `migrate.upgrade`, the secondary indexes of
`workitem` and `workitem_seq_item` are dropped, the rows are bulk inserted (the Core INSERT, compiled
once, run as executemany of 5,000 rows on SQLite; COPY on PostgreSQL; generated in a child process
meanwhile), the indexes are rebuilt from their own DDL and the tables ANALYZEd (`--no-analyze`: not,
as in a database `wfm serve` created). Each row's dataset_json is what the server would have written
(checked on a sample against `index_workitem`, N-CREATE validation and the Final State requirements).

Each server runs in its own process; the client (one association, TCP_NODELAY, pynetdicom on the same
event-driven transport, so that it adds as little as it can to either side) runs here.
Query parameters are drawn from what was seeded and change at every repetition; the query types are
interleaved in one random order, the same for both servers. Latency is from the C-FIND-RQ to the final
response, all matches received. SQLite commits stay durable (WAL, synchronous=FULL: the server's own
settings; only the seeding runs with synchronous=OFF). `--explain` prints each query type's SQL plan.

Queries (all but (e) ask for ProcedureStepState SCHEDULED; return keys as a scheduler asks them):
  (a) Scheduled Station Name Code Sequence (code value + scheme) + start in one day
  (b) start in a window: one day, narrowed to whole hours when one day of SCHEDULED work would
      exceed ~25 matches (1 h at full size: 100,000 SCHEDULED over a year is ~270 a day)
  (c) Input Readiness State READY + priority HIGH + Worklist Label
  (d) Worklist Label
  (e) Patient ID (any state)
  (f) Patient's Name, a prefix in upper case as a clerk types it: "KALO^JAN*" (any state; matched
      case-insensitively, as for every PN)
To keep every answer at <= 50 matches (checked: exit status 1 otherwise) there are SCHEDULED / 25
worklist labels (4,000 at full size), not a few hundred: with 300, (d) would return ~330 workitems.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import UnifiedProcedureStepPull, UnifiedProcedureStepPush

from workflow.dimse import event_driven
from workflow.dimse.nodelay import NoDelayAE, NoDelayAssociationServer
from workflow.dimse.reactor import StrayCounter, hold_reactor, release_reactor
from workflow.dimse.server import TRANSFER_SYNTAXES

PULL, PUSH = UnifiedProcedureStepPull, UnifiedProcedureStepPush
UPS_PUSH_SOP_CLASS = str(UnifiedProcedureStepPush)
POSTGRES_URL = os.environ.get("WFM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TARGET_MS = 100.0
MAX_MATCHES = 50
BATCH = 5_000  # rows per executemany / COPY chunk
COMMIT_EVERY = 100_000  # workitems per transaction while seeding


# ================================================================ the seeded worklist (deterministic)

ROOT = "1.2.826.0.1.3680043.8.498.77"  # + branch + fixed-width counter: UIDs sort as inserted
SCHEME = "99HOSP"
MODALITIES = ("CT", "MR", "US", "XR", "NM", "MG", "AI", "RP")
SITES = ("NORTH", "SOUTH", "EAST", "WEST", "CENTRAL")
STATIONS = tuple((f"{MODALITIES[n % 8]}{n:03d}", f"{MODALITIES[n % 8]} station {n:03d}, {SITES[n % 5].title()} site")
                 for n in range(1, 201))
WORKITEM_CODES = (("110001", "Image Processing"), ("110002", "Quality Control"),
                  ("110003", "Computer Aided Diagnosis"), ("110004", "Computer Aided Detection"),
                  ("110005", "Interpretation"), ("110006", "Transcription"), ("110007", "Report Verification"))
BODY_PARTS = ("head", "chest", "abdomen", "pelvis", "spine", "knee", "shoulder", "breast", "heart", "wrist")
DEPARTMENTS = ("NEURO", "BODY", "CHEST", "MSK", "BREAST", "CARDIO", "PEDS", "NUCMED", "IR", "ER")
FAMILY = ("Smith", "Jones", "Garcia", "Miller", "Davis", "Martin", "Lopez", "Wilson", "Anderson", "Thomas",
          "Moore", "Jackson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "King",
          "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts",
          "Carter", "Phillips", "Evans", "Turner", "Torres", "Parker", "Collins", "Edwards", "Stewart", "Morris")
GIVEN = ("Jane", "John", "Maria", "Ahmed", "Wei", "Olga", "Pierre", "Aiko", "Lars", "Fatima", "Noah", "Emma",
         "Liam", "Olivia", "Lucas", "Mia", "Mateo", "Sofia", "Arjun", "Chloe", "Kofi", "Ines", "Yuki", "Omar")
# Family names of one to three syllables: 47,988 of them, so that a patient's name is nearly as selective
# as in a hospital (a few workitems per name at full size), not one of a few hundred.
SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "to", "vel", "din", "bra", "gor", "hal", "ish", "jun", "kel",
             "mar", "nor", "pet", "qui", "ros", "sten", "tur", "ul", "ven", "wen", "yar", "zo", "ad", "bel",
             "cas", "dor", "eng", "fal", "gri", "hol", "ivo", "lan")
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SR_DOCUMENT = "1.2.840.10008.5.1.4.1.1.88.33"

PRIORITIES = (("HIGH", 0.10), ("MEDIUM", 0.60), ("LOW", 0.30))
READINESS_SCHEDULED = (("READY", 0.70), ("INCOMPLETE", 0.20), ("UNAVAILABLE", 0.10))
FIRST_HOUR, LAST_HOUR = 6, 22  # work is scheduled between 06:00 and 22:00
DAYS = 365


def _v(vr: str, *values: Any) -> dict:
    return {"Value": list(values), "vr": vr}


def _e(vr: str) -> dict:
    return {"vr": vr}


def _sq(*items: dict) -> dict:
    return {"Value": list(items), "vr": "SQ"}


def _code(value: str, scheme: str, meaning: str) -> dict:
    return {"00080100": _v("SH", value), "00080102": _v("SH", scheme), "00080104": _v("LO", meaning)}


STATION_ITEMS = tuple(_code(value, SCHEME, meaning) for value, meaning in STATIONS)
WORKITEM_ITEMS = tuple(_code(value, "DCM", meaning) for value, meaning in WORKITEM_CODES)
NO_REASON = _code("110513", "DCM", "Discontinued for unspecified reason")


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    for value, weight in weighted:
        x -= weight
        if x < 0:
            return value
    return weighted[-1][0]


@dataclass(frozen=True)
class Sizes:
    scheduled: int
    finished: int

    @property
    def total(self) -> int:
        return self.scheduled + self.finished

    @property
    def labels(self) -> int:
        return max(10, self.scheduled // 25)

    @property
    def window_hours(self) -> int:
        """Width of query (b)'s start range: one day, or fewer whole hours for ~25 matches."""
        per_hour = self.scheduled / (DAYS * (LAST_HOUR - FIRST_HOUR))
        return 24 if per_hour * 24 <= 25 else max(1, min(24, int(25 / per_hour)))


@dataclass(frozen=True)
class Scheduled:
    """What the query planner needs to know of a seeded SCHEDULED workitem."""

    uid: str
    stations: tuple[int, ...]
    start: str  # YYYYMMDDHHMMSS
    label: str


@dataclass
class Catalog:
    scheduled: list[Scheduled] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)  # a sample of seeded Patient IDs
    names: list[str] = field(default_factory=list)  # the Patient's Names of the same sample
    # (dataset_json, columns, seq rows) of a sample of the seeded workitems, for check_samples
    samples: list[tuple[str, dict, list[tuple]]] = field(default_factory=list)
    seq_rows: int = 0
    ready_high: list[Scheduled] = field(default_factory=list)  # the SCHEDULED ones READY and HIGH


class JsonTemplate:
    """`json.dumps(ds, sort_keys=True)` of a data set with holes, filled by % formatting (a json.dumps per
    row would cost more than the rest of the seeding): `@name@` inside a string is a text hole (for our
    generated values only: no quote, no backslash), a string that is exactly `@@name@@` is replaced whole
    by a JSON fragment."""

    def __init__(self, ds: dict) -> None:
        text = json.dumps(ds, sort_keys=True).replace("%", "%%")
        text = re.sub(r'"@@(\w+)@@"', r"%(\1)s", text)
        self.format = re.sub(r"@(\w+)@", r"%(\1)s", text)

    def __call__(self, **values: Any) -> str:
        return self.format % values


def _fragment(element: dict) -> str:
    return json.dumps(element, sort_keys=True)


def _sq_json(items: Iterable[str]) -> str:
    """A sequence element (as _fragment writes it) of items already in JSON."""
    return f'{{"Value": [{", ".join(items)}], "vr": "SQ"}}'


EMPTY_SQ = _fragment(_sq())
STATION_JSON = tuple(_fragment(item) for item in STATION_ITEMS)
WORKITEM_SQ_JSON = tuple(_fragment(_sq(item)) for item in WORKITEM_ITEMS)
_PACS = _sq({"00080054": _v("AE", "PACS")})
INSTANCE = JsonTemplate({"00081150": _v("UI", CT_IMAGE), "00081155": _v("UI", "@series@.@n@")})
INPUT = JsonTemplate(_sq({"0020000D": _v("UI", "@study@"), "0020000E": _v("UI", "@series@"),
                          "00081199": "@@instances@@", "0040E020": _v("CS", "DICOM"), "0040E021": _PACS}))
PERFORMED = JsonTemplate(_sq({
    "00404019": "@@work@@", "00404028": "@@station@@", "00404035": _sq(),
    "00404033": _sq({"0020000D": _v("UI", "@study@"), "0020000E": _v("UI", "@study@.2"),
                     "00081199": _sq({"00081150": _v("UI", SR_DOCUMENT), "00081155": _v("UI", "@study@.2.1")}),
                     "0040E020": _v("CS", "DICOM"), "0040E021": _PACS}),
    "00404050": _v("DT", "@start@"), "00404051": _v("DT", "@end@")}))
CANCELLED = JsonTemplate(_sq({"00404052": _v("DT", "@at@"), "0074100E": _sq(NO_REASON)}))
WORKITEM = JsonTemplate({
    "00080016": _v("UI", UPS_PUSH_SOP_CLASS), "00080018": _v("UI", "@uid@"),
    "00081080": _e("LO"), "00081084": _sq(),
    "00100010": _v("PN", {"Alphabetic": "@patient_name@"}), "00100020": _v("LO", "@patient_id@"),
    "00100021": _v("LO", "HOSP"), "00100024": _sq(), "00100030": _v("DA", "@birth@"),
    "00100040": _v("CS", "@sex@"), "00101002": _sq(), "0020000D": _v("UI", "@study@"),
    "00380010": _e("LO"), "00380014": _sq(), "00400400": _e("LT"),
    "00404005": _v("DT", "@start@"), "00404010": _v("DT", "@modified@+0000"), "00404011": _v("DT", "@expected@"),
    "00404018": "@@work@@", "00404021": "@@input@@", "00404025": "@@stations@@",
    "00404026": _sq(), "00404027": _sq(), "00404041": _v("CS", "@readiness@"),
    "0040A370": _sq({"00080050": _v("SH", "@accession@"), "00080051": _sq(), "0020000D": _v("UI", "@study@"),
                     "00321060": _v("LO", "@description@"), "00321064": _sq(), "00400026": _sq(),
                     "00400027": _sq(), "00401001": _v("SH", "@procedure_id@")}),
    "00741000": _v("CS", "@state@"), "00741002": "@@progress@@", "00741200": _v("CS", "@priority@"),
    "00741202": _v("LO", "@label@"), "00741204": _v("LO", "@step_label@"), "00741210": _sq(),
    "00741216": "@@performed@@",
})

DAY_US = 86_400_000_000


class Worklist:
    """The seeded workitems, row by row, in SOP Instance UID order: the `workitem` row (dataset_json as
    the server writes it), its `workitem_seq_item` rows (what `index_workitem` gives, built directly
    because it is faster; checked against it on a sample), and the catalog the queries are drawn from.
    Times are kept as integer microseconds since `self.base` (formatting datetimes is slow)."""

    def __init__(self, sizes: Sizes, seed: int) -> None:
        self.sizes = sizes
        self.seed = seed
        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        first_day = today - timedelta(days=DAYS - 30)  # eleven months back, one ahead
        self.base = first_day - timedelta(days=30)  # room for creation times before the first day
        self.days = [(self.base + timedelta(days=d)).strftime("%Y%m%d") for d in range(DAYS + 60)]
        self.labels = [f"{DEPARTMENTS[i % len(DEPARTMENTS)]}-{i:05d}" for i in range(sizes.labels)]
        self.catalog = Catalog()

    def _dt(self, us: int) -> str:
        """YYYYMMDDHHMMSS of a time."""
        day, rest = divmod(us, DAY_US)
        hours, rest = divmod(rest // 1_000_000, 3600)
        return f"{self.days[day]}{hours:02d}{rest // 60:02d}{rest % 60:02d}"

    def _at(self, us: int) -> datetime:
        return self.base + timedelta(microseconds=us)

    def batches(self, size: int = BATCH) -> Iterator[tuple[list[dict], list[tuple]]]:
        rng = random.Random(self.seed)
        sample_rng = random.Random(self.seed + 7)
        sched_left, total_left = self.sizes.scheduled, self.sizes.total
        patients = max(1, int(self.sizes.total * 0.7))  # ~1.4 workitems per patient
        rows: list[dict] = []
        seq: list[tuple] = []
        self.catalog = Catalog()
        for i in range(self.sizes.total):
            scheduled = rng.random() * total_left < sched_left  # exact counts, randomly interleaved
            sched_left -= scheduled
            total_left -= 1
            row, seq_rows, columns = self._workitem(rng, i, scheduled, int(rng.random() * patients))
            rows.append(row)
            seq.extend(seq_rows)
            self.catalog.seq_rows += len(seq_rows)
            if i < 40 or sample_rng.random() < 100 / self.sizes.total:
                self.catalog.samples.append((row["dataset_json"], columns, seq_rows))
            if len(self.catalog.patients) < 5_000:
                self.catalog.patients.append(row["patient_id"])
                self.catalog.names.append(row["patient_name"])
            elif (j := sample_rng.randrange(i + 1)) < 5_000:  # reservoir sample
                self.catalog.patients[j] = row["patient_id"]
                self.catalog.names[j] = row["patient_name"]
            if len(rows) >= size:
                yield rows, seq
                rows, seq = [], []
        if rows:
            yield rows, seq

    def _workitem(self, rng: random.Random, i: int, scheduled: bool, patient: int):
        uid = f"{ROOT}.1.{1_000_000_000 + i}"
        study = f"{ROOT}.2.{1_000_000_000 + i}"
        r = rng.random  # int(r() * n) is a fine and much faster randrange(n) here
        start_us = ((30 + int(r() * DAYS)) * DAY_US
                    + (FIRST_HOUR * 60 + int(r() * (LAST_HOUR - FIRST_HOUR) * 60)) * 60_000_000)
        start = self._dt(start_us)
        expected = self._dt(start_us + (15, 30, 45, 60, 90, 120)[int(r() * 6)] * 60_000_000)
        created_us = start_us - 600_000_000 - int(r() * 14 * DAY_US)
        stations = (int(r() * 200),) if r() < 0.85 else tuple(rng.sample(range(200), 2))
        work = int(r() * len(WORKITEM_CODES))
        modality, body = MODALITIES[stations[0] % 8], BODY_PARTS[int(r() * len(BODY_PARTS))]
        label = self.labels[int(r() * len(self.labels))]
        priority = _pick(rng, PRIORITIES)
        progress = performed = EMPTY_SQ
        if scheduled:
            state, readiness, txn, finished_us = "SCHEDULED", _pick(rng, READINESS_SCHEDULED), None, None
        else:
            state = "COMPLETED" if r() < 0.9 else "CANCELED"
            readiness = "READY" if r() < 0.97 else "INCOMPLETE"
            finished_us = start_us + 300_000_000 + int(r() * 3 * 3_600_000_000)
            if state == "COMPLETED":
                txn = f"{ROOT}.3.{1_000_000_000 + i}"
                performed = PERFORMED(work=WORKITEM_SQ_JSON[work], station=_sq_json([STATION_JSON[stations[0]]]),
                                      study=study, start=start, end=self._dt(finished_us))
            else:
                txn = None
                progress = CANCELLED(at=f"{self._dt(finished_us)}.{finished_us % 1_000_000:06d}+0000")
        modified_us = finished_us or created_us
        modified = f"{self._dt(modified_us)}.{modified_us % 1_000_000:06d}"
        patient_name = f"{family_name(patient)}^{GIVEN[patient % len(GIVEN)]}"
        patient_id = f"PID{patient:08d}"
        birth = f"{1925 + patient % 95}{1 + patient % 12:02d}{1 + patient % 28:02d}"
        sex = "MF"[patient % 2] if patient % 50 else "O"
        accession, procedure_id = f"ACC{10_000_000 + i}", f"RP{10_000_000 + i}"
        description = f"{modality} {body}"
        step_label = f"{description} {WORKITEM_CODES[work][1].lower()}"
        series = f"{study}.1"
        instances = _sq_json(INSTANCE(series=series, n=n) for n in range(1, 2 + int(r() * 4)))
        dataset_json = WORKITEM(
            uid=uid, patient_name=patient_name, patient_id=patient_id, birth=birth, sex=sex, study=study,
            start=start, modified=modified, expected=expected, work=WORKITEM_SQ_JSON[work],
            input=INPUT(study=study, series=series, instances=instances),
            stations=_sq_json(STATION_JSON[s] for s in stations),
            readiness=readiness, accession=accession, description=description, procedure_id=procedure_id,
            state=state, progress=progress, priority=priority, label=label, step_label=step_label,
            performed=performed)
        columns = {
            "procedure_step_state": state, "priority": priority, "procedure_step_label": step_label,
            "worklist_label": label, "scheduled_start_datetime": f"{start}.000000",
            "expected_completion_datetime": f"{expected}.000000", "modification_datetime": modified,
            "expiration_datetime": None, "input_readiness_state": readiness, "study_instance_uid": study,
            "patient_name": patient_name, "patient_id": patient_id, "patient_birth_date": birth,
            "patient_sex": sex, "admission_id": None,
        }
        row = dict(columns, sop_instance_uid=uid, transaction_uid=txn, dataset_json=dataset_json,
                   created_at=self._at(created_us), updated_at=self._at(modified_us),
                   finished_at=self._at(finished_us) if finished_us else None)
        seq_rows = []
        for item_index, s in enumerate(stations):
            seq_rows += _code_rows(uid, "00404025", item_index, STATIONS[s][0], SCHEME, STATIONS[s][1])
        seq_rows += _code_rows(uid, "00404018", 0, WORKITEM_CODES[work][0], "DCM", WORKITEM_CODES[work][1])
        seq_rows += [_seq_row(uid, "0040A370", 0, "0020000D", study),
                     _seq_row(uid, "0040A370", 0, "00080050", accession),
                     _seq_row(uid, "0040A370", 0, "00401001", procedure_id),
                     _seq_row(uid, "0040A370", 0, "00321060", description)]
        if scheduled:
            self.catalog.scheduled.append(Scheduled(uid, stations, start, label))
            if readiness == "READY" and priority == "HIGH":
                self.catalog.ready_high.append(self.catalog.scheduled[-1])
        return row, seq_rows, columns


SEQ_COLUMNS = ("workitem_uid", "sequence_tag", "item_index", "key", "value_index", "value")


def _seq_row(uid: str, sequence_tag: str, item_index: int, key: str, value: str) -> tuple:
    """A workitem_seq_item row, as a tuple in SEQ_COLUMNS order."""
    return uid, sequence_tag, item_index, key, 0, value


def _code_rows(uid: str, sequence_tag: str, item_index: int, value: str, scheme: str, meaning: str) -> list[tuple]:
    return [_seq_row(uid, sequence_tag, item_index, "00080100", value),
            _seq_row(uid, sequence_tag, item_index, "00080102", scheme),
            _seq_row(uid, sequence_tag, item_index, "00080104", meaning)]


def check_samples(catalog: Catalog) -> None:
    """The seeded rows are what the server itself would have written: `index_workitem` gives the same
    columns and sequence rows, a SCHEDULED data set passes N-CREATE validation, a finished one meets its
    Final State requirements."""
    from workflow.ups.rules.attributes import check_create, final_state_unmet
    from workflow.ups.index import index_workitem

    def key(r: dict) -> tuple:
        return (r["sequence_tag"], r["item_index"], r["key"], r["value_index"], r["value"])

    for text, columns, seq_rows in catalog.samples:
        ds = json.loads(text)
        uid = ds["00080018"]["Value"][0]
        if json.dumps(ds, sort_keys=True) != text:
            raise AssertionError(f"{uid}: dataset_json is not what json.dumps(sort_keys=True) writes")
        Dataset.from_json(ds)  # what N-GET does with it
        expected_columns, expected_rows = index_workitem(ds)
        if expected_columns != columns:
            diff = {k: (v, columns.get(k)) for k, v in expected_columns.items() if columns.get(k) != v}
            raise AssertionError(f"{uid}: seeded columns differ from index_workitem: {diff}")
        if sorted(map(key, expected_rows)) != sorted(row[1:] for row in seq_rows):
            raise AssertionError(f"{uid}: seeded workitem_seq_item rows differ from index_workitem")
        state = ds["00741000"]["Value"][0]
        if state == "SCHEDULED":
            create = {k: v for k, v in ds.items() if k not in ("00080016", "00080018", "00404010",
                                                              "00741002", "00741216")}
            check_create(create)
        else:
            unmet = final_state_unmet(ds, state)
            if unmet:
                raise AssertionError(f"{uid}: {state} but final state requirements unmet: {unmet}")


# ================================================================ seeding

SEEDED_TABLES = ("workitem", "workitem_seq_item")


def seed_sqlite(url: str, worklist: Worklist, analyze: bool = True) -> None:
    from sqlalchemy import create_engine, event

    from workflow.store import migrate
    from workflow.ups.tables import Workitem, WorkitemSeqItem

    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        # Seeding only: no journal, no fsync, a big page cache. The server opens the file with its own
        # settings (WAL, synchronous=FULL); WAL is made the file's mode at the end.
        cur.execute("PRAGMA journal_mode=OFF")
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-1000000")  # ~1 GB
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    migrate.upgrade(engine)
    _check_seq_columns(WorkitemSeqItem.__table__)
    # The Core INSERTs compiled once and run as executemany on rows already converted by the columns'
    # own bind processors: what conn.execute(table.insert(), dicts) does, without its per-row overhead.
    insert_workitem = str(Workitem.__table__.insert().compile(dialect=engine.dialect))
    insert_seq = str(WorkitemSeqItem.__table__.insert().compile(dialect=engine.dialect))
    as_tuple = _row_converter(Workitem.__table__, engine.dialect)
    with engine.connect() as conn:
        # Secondary indexes are dropped for the load and rebuilt after it from their own DDL.
        names = ", ".join(f"'{t}'" for t in SEEDED_TABLES)
        indexes = conn.exec_driver_sql(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                       f"AND sql IS NOT NULL AND tbl_name IN ({names})").all()
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        conn.commit()
        done = 0
        for rows, seq_rows in _produced(worklist):
            conn.exec_driver_sql(insert_workitem, [as_tuple(row) for row in rows])
            conn.exec_driver_sql(insert_seq, seq_rows)
            done += len(rows)
            if done % COMMIT_EVERY < BATCH:
                conn.commit()
                _progress(done, worklist.sizes.total)
        conn.commit()
        _finish(conn, [sql for _, sql in indexes], ["ANALYZE"] if analyze else [])
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    engine.dispose()


def seed_postgres(url: str, worklist: Worklist, analyze: bool = True) -> None:
    from sqlalchemy import create_engine

    from workflow.store import migrate
    from workflow.ups.tables import Workitem, WorkitemSeqItem

    engine = create_engine(url)
    migrate.upgrade(engine)
    _check_seq_columns(WorkitemSeqItem.__table__)
    columns = [c.name for c in Workitem.__table__.columns]
    with engine.connect() as conn:
        # Session settings for the load only: no FK triggers (the rows are consistent by construction),
        # no wait for the WAL flush at commit, memory for the index builds.
        for setting in ("session_replication_role = replica", "synchronous_commit = off",
                        "maintenance_work_mem = '512MB'"):
            conn.exec_driver_sql(f"SET {setting}")
        # Secondary indexes (not those of constraints) are dropped for the load, rebuilt after it.
        names = ", ".join(f"'{t}'" for t in SEEDED_TABLES)
        indexes = conn.exec_driver_sql(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            f"JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname IN ({names}) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)").all()
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        conn.commit()
        pg = conn.connection.driver_connection
        done = 0
        with pg.cursor() as cur:
            for rows, seq_rows in _produced(worklist):
                with cur.copy(f"COPY workitem ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
                with cur.copy(f"COPY workitem_seq_item ({', '.join(SEQ_COLUMNS)}) FROM STDIN") as copy:
                    for row in seq_rows:
                        copy.write_row(row)
                done += len(rows)
                if done % COMMIT_EVERY < BATCH:
                    pg.commit()
                    _progress(done, worklist.sizes.total)
        pg.commit()
        conn.exec_driver_sql("RESET session_replication_role")
        conn.commit()
        # VACUUM as well: sets hint bits and the visibility map now, not in autovacuum during the run.
        _finish(conn, [sql for _, sql in indexes],
                [f"VACUUM {'ANALYZE ' if analyze else ''}{t}" for t in SEEDED_TABLES],
                autocommit=True)
    engine.dispose()


def _finish(conn, create_indexes: list[str], analyze: list[str], autocommit: bool = False) -> None:
    started = time.perf_counter()
    for sql in create_indexes:
        conn.exec_driver_sql(sql)
    conn.commit()
    built = time.perf_counter()
    if autocommit:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    for sql in analyze:
        conn.exec_driver_sql(sql)
    conn.commit()
    print(f"#   {len(create_indexes)} indexes rebuilt in {built - started:.1f} s; "
          f"{'; '.join(analyze) or 'no ANALYZE'}: {time.perf_counter() - built:.1f} s", file=sys.stderr)


def _produce(worklist: Worklist, queue) -> None:
    for batch in worklist.batches():
        queue.put(batch)
    queue.put(worklist.catalog)


def _produced(worklist: Worklist) -> Iterator[tuple[list[dict], list[tuple]]]:
    """worklist.batches(), generated in a child process while this one writes (2 cores: twice as fast);
    worklist.catalog is the child's at the end."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue(maxsize=4)
    child = ctx.Process(target=_produce, args=(worklist, queue), name="wfm-bench-seed", daemon=True)
    child.start()
    try:
        while True:
            item = queue.get(timeout=600)
            if isinstance(item, Catalog):
                worklist.catalog = item
                return
            yield item
    finally:
        child.join(10)
        if child.is_alive():
            child.terminate()
            child.join(10)


def _check_seq_columns(table) -> None:
    if tuple(c.name for c in table.columns) != SEQ_COLUMNS:
        raise RuntimeError(f"workitem_seq_item has other columns than {SEQ_COLUMNS}: update this benchmark")


def _row_converter(table, dialect):
    """row dict -> tuple in the table's column order, each value through its column type's bind
    processor (e.g. UTCDateTime -> UTC text on SQLite)."""
    names = [c.name for c in table.columns]
    procs = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.columns]

    def as_tuple(row: dict) -> tuple:
        return tuple(proc(row[name]) if proc else row[name] for name, proc in zip(names, procs))

    return as_tuple


def _progress(done: int, total: int) -> None:
    if total >= 200_000:
        print(f"#   {done:,} / {total:,} workitems", file=sys.stderr, flush=True)


# ================================================================ queries

QUERY_NAMES = {
    "a": "(a) station + day + SCHEDULED",
    "b": "(b) start window + SCHEDULED",
    "c": "(c) READY + HIGH + label + SCHED",
    "d": "(d) worklist label + SCHEDULED",
    "e": "(e) patient ID",
    "f": "(f) patient name prefix",
}


def family_name(patient: int) -> str:
    n, parts = patient % 47_988 + 1, []
    while n:
        n, digit = divmod(n - 1, len(SYLLABLES))
        parts.append(SYLLABLES[digit])
    return "".join(parts).capitalize()


def identifier(**match: Any) -> Dataset:
    """A scheduler's C-FIND identifier: the usual return keys, `match` as matching keys."""
    ds = Dataset()
    ds.SOPInstanceUID = ""
    ds.ProcedureStepState = ""
    ds.ScheduledProcedureStepPriority = ""
    ds.ProcedureStepLabel = ""
    ds.WorklistLabel = ""
    ds.ScheduledProcedureStepStartDateTime = ""
    ds.InputReadinessState = ""
    ds.PatientName = ""
    ds.PatientID = ""
    ds.ScheduledStationNameCodeSequence = []
    ds.ScheduledWorkitemCodeSequence = []
    ds.StudyInstanceUID = ""
    ds.InputInformationSequence = []
    for keyword, value in match.items():
        setattr(ds, keyword, value)
    return ds


def _station_item(station: int) -> Dataset:
    item = Dataset()
    item.CodeValue = STATIONS[station][0]
    item.CodingSchemeDesignator = SCHEME
    return item


def _day_range(start: str) -> str:
    return f"{start[:8]}000000-{start[:8]}235959"


def make_query(kind: str, rng: random.Random, catalog: Catalog, window_hours: int) -> Dataset:
    """A query of `kind` whose parameters come from a random seeded workitem (so it matches it)."""
    if kind == "e":
        return identifier(PatientID=rng.choice(catalog.patients))
    if kind == "f":  # as a clerk types it: upper case, the given name's first letters
        family, given = rng.choice(catalog.names).split("^")
        return identifier(PatientName=f"{family.upper()}^{given[:3].upper()}*")
    if kind == "c":
        w = rng.choice(catalog.ready_high or catalog.scheduled)
        return identifier(ProcedureStepState="SCHEDULED", InputReadinessState="READY",
                          ScheduledProcedureStepPriority="HIGH", WorklistLabel=w.label)
    w = rng.choice(catalog.scheduled)
    if kind == "a":
        return identifier(ProcedureStepState="SCHEDULED", ScheduledProcedureStepStartDateTime=_day_range(w.start),
                          ScheduledStationNameCodeSequence=[_station_item(rng.choice(w.stations))])
    if kind == "b":
        if window_hours >= 24:
            return identifier(ProcedureStepState="SCHEDULED", ScheduledProcedureStepStartDateTime=_day_range(w.start))
        at = datetime.strptime(w.start[:10], "%Y%m%d%H") - timedelta(hours=rng.randrange(window_hours))
        end = at + timedelta(hours=window_hours) - timedelta(seconds=1)
        return identifier(ProcedureStepState="SCHEDULED",
                          ScheduledProcedureStepStartDateTime=f"{at:%Y%m%d%H%M%S}-{end:%Y%m%d%H%M%S}")
    if kind == "d":
        return identifier(ProcedureStepState="SCHEDULED", WorklistLabel=w.label)
    raise ValueError(kind)


@dataclass
class Planned:
    kind: str
    ds: Dataset
    key: str = ""  # sha1 of the encoded identifier: how the baseline recognises the query
    matches: int = 0  # what wfm answered


def plan_queries(catalog: Catalog, sizes: Sizes, repeats: int, seed: int) -> tuple[list[Planned], list[Planned]]:
    """(warm-up queries, measured queries): the measured ones in one random order of all kinds."""
    rng = random.Random(seed + 1)
    warmup = [Planned(k, make_query(k, rng, catalog, sizes.window_hours)) for k in QUERY_NAMES for _ in range(2)]
    measured = [Planned(k, make_query(k, rng, catalog, sizes.window_hours)) for k in QUERY_NAMES
                for _ in range(repeats)]
    rng.shuffle(measured)
    return warmup, measured


# ================================================================ the baseline server (own process)

def run_baseline_server(port: int, answers_file: str) -> None:
    from pynetdicom import _config, evt
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    event_driven.install()  # the transport wfm serve runs on: the ratio compares handlers only

    with open(answers_file) as f:
        answers = {key: [Dataset.from_json(m) for m in matches] for key, matches in json.load(f).items()}

    def on_find(event):
        matches = answers.get(hashlib.sha1(event.request.Identifier.getvalue()).hexdigest())
        if matches is None:
            yield 0xC000, None
            return
        for match in matches:
            yield 0xFF00, match

    def on_action(event):
        return 0x0000, None

    serve_until_signalled(port, [(evt.EVT_C_FIND, on_find), (evt.EVT_N_ACTION, on_action)])


def serve_until_signalled(port: int, handlers: list) -> None:
    """A bare UPS SCP (AE title BASELINE) with `handlers`, until SIGTERM or SIGINT."""
    ae = NoDelayAE(ae_title="BASELINE")
    for sop_class in (PUSH, PULL):
        ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
    ae.maximum_associations = 20
    server = ae.make_server(("127.0.0.1", port), evt_handlers=handlers, server_class=NoDelayAssociationServer)
    ae._servers.append(server)  # as AE.start_server(block=False) and wfm's DicomServer do
    threading.Thread(target=server.serve_forever, name="baseline-acceptor", daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.shutdown()


def run_durable_claims_server(port: int, url: str, uids_file: str) -> None:
    """A second claims baseline: the least a durable claim handler must do (`durable_claims`)."""
    from pynetdicom import _config, evt
    _config.LOG_HANDLER_LEVEL = "none"
    event_driven.install()
    on_action, close = durable_claims(url, Path(uids_file).read_text().split())
    serve_until_signalled(port, [(evt.EVT_N_ACTION, on_action)])
    close()


def durable_claims(url: str, uids: list[str], announce=None):
    """(N-ACTION handler, close): the least a durable claim handler must do, with the raw driver and no
    framework. It decodes the Action Information (pydicom), then in one transaction locks the workitem's
    row (BEGIN IMMEDIATE on SQLite, SELECT ... FOR UPDATE on PostgreSQL), checks the state, writes the
    new state and Transaction UID, and commits durably (SQLite: WAL, synchronous=FULL, as wfm serve)
    before answering. Its table holds `uids`, seeded SCHEDULED. With `announce`, the claim also writes
    its event to an outbox table in the same transaction (nothing acknowledged is lost) and, once
    committed, calls `announce(outbox id, uid)`."""
    if url.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        begin, lock, mark = "BEGIN IMMEDIATE", "SELECT state FROM claim WHERE uid = ?", "?"
        serial = "INTEGER PRIMARY KEY"
    else:
        import psycopg
        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        begin, lock, mark = "BEGIN", "SELECT state FROM claim WHERE uid = %s FOR UPDATE", "%s"
        serial = "SERIAL PRIMARY KEY"
    for table in ("claim", "claim_outbox"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("CREATE TABLE claim (uid VARCHAR(64) PRIMARY KEY, state VARCHAR(16), txn VARCHAR(64))")
    conn.execute(f"CREATE TABLE claim_outbox (id {serial}, uid VARCHAR(64), state VARCHAR(16))")
    conn.execute("BEGIN")
    for uid in uids:
        conn.execute(f"INSERT INTO claim VALUES ({mark}, 'SCHEDULED', NULL)", (uid,))
    conn.execute("COMMIT")
    update = f"UPDATE claim SET state = {mark}, txn = {mark} WHERE uid = {mark}"
    enqueue = f"INSERT INTO claim_outbox (uid, state) VALUES ({mark}, 'IN PROGRESS') RETURNING id"

    def on_action(event):
        info = event.action_information
        uid = str(event.request.RequestedSOPInstanceUID)
        conn.execute(begin)
        try:
            row = conn.execute(lock, (uid,)).fetchone()
            if row is None or row[0] != "SCHEDULED" or info.ProcedureStepState != "IN PROGRESS":
                conn.execute("ROLLBACK")
                return (0xC302 if row else 0xC307), None
            conn.execute(update, ("IN PROGRESS", str(info.TransactionUID), uid))
            queued = conn.execute(enqueue, (uid,)).fetchone()[0] if announce else None
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        if announce:
            announce(queued, uid)
        return 0x0000, None

    return on_action, conn.close


# ================================================================ the client

class Client:
    def __init__(self, port: int, called: str) -> None:
        # The client's reactors wait for work too: polling each millisecond, they added ~2 ms to every
        # round trip, to both servers alike, which flattered every ratio.
        event_driven.install()
        ae = NoDelayAE(ae_title="BENCH")
        ae.add_requested_context(PULL, list(TRANSFER_SYNTAXES))
        ae.acse_timeout = 30
        ae.dimse_timeout = ae.network_timeout = 600
        self.assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not self.assoc.is_established:
            raise RuntimeError(f"association with {called} on port {port} refused")
        ts = next(c for c in self.assoc.accepted_contexts if c.abstract_syntax == PULL).transfer_syntax[0]
        self.ts = UID(ts)
        # pynetdicom's reactor may take a response meant for the request (its issue #875): held before each
        # request, and a response it took anyway fails the run instead of shortening an answer.
        self.strays = StrayCounter(self.assoc)

    def key(self, ds: Dataset) -> str:
        """The hash of the identifier bytes pynetdicom will send (it encodes exactly like this)."""
        raw = encode(ds, self.ts.is_implicit_VR, self.ts.is_little_endian, self.ts.is_deflated)
        return hashlib.sha1(raw).hexdigest()

    def _no_strays(self, before: int, what: str) -> None:
        if self.strays.count != before:
            raise RuntimeError(f"{what}: a response was lost locally (pynetdicom reactor race, issue #875)")

    def find(self, ds: Dataset, keep: list | None = None) -> tuple[float, int]:
        """(seconds, matches) of one C-FIND; the match identifiers go to `keep` when given."""
        matches = 0
        strays = self.strays.count
        started = time.perf_counter()
        hold_reactor(self.assoc)
        try:
            for status, ident in self.assoc.send_c_find(ds, PULL):
                if status is None or not status:
                    raise RuntimeError("C-FIND: no response (association lost?)")
                if status.Status in (0xFF00, 0xFF01):
                    matches += 1
                    if keep is not None:
                        keep.append(ident)
                elif status.Status != 0x0000:
                    raise RuntimeError(f"C-FIND failed with 0x{status.Status:04X}: {status.get('ErrorComment', '')}")
        finally:
            release_reactor(self.assoc)
        seconds = time.perf_counter() - started
        self._no_strays(strays, "C-FIND")
        return seconds, matches

    def claims(self, infos: list[tuple[str, Dataset]]) -> float:
        """Seconds for N-ACTION 1 (to IN PROGRESS) on every (uid, info); each must succeed."""
        strays = self.strays.count
        started = time.perf_counter()
        for uid, info in infos:
            hold_reactor(self.assoc)
            try:
                status, _ = self.assoc.send_n_action(info, 1, PUSH, uid, meta_uid=PULL)
            finally:
                release_reactor(self.assoc)
            if not status or status.Status != 0x0000:
                code = f"0x{status.Status:04X}" if status else "no response"
                raise RuntimeError(f"claim of {uid} failed: {code}")
        seconds = time.perf_counter() - started
        self._no_strays(strays, "N-ACTION")
        return seconds

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def claim_infos(uids: list[str]) -> list[tuple[str, Dataset]]:
    out = []
    for uid in uids:
        info = Dataset()
        info.ProcedureStepState = "IN PROGRESS"
        info.TransactionUID = generate_uid()
        out.append((uid, info))
    return out


# ================================================================ processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


class Process:
    """A server in its own process, stopped (SIGTERM, then SIGKILL) when the block ends."""

    def __init__(self, command: list[str], port: int, log: Path, env: dict | None = None) -> None:
        self.command, self.port, self.log, self.env = command, port, log, env or {}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Process":
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.command, env={**os.environ, **self.env},
                                         stdout=subprocess.DEVNULL, stderr=log)
        wait_listening(self.port, self.proc, self.log)
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None and self.log.exists():  # what the server said about it
            tail = self.log.read_text(errors="replace")[-3000:]
            print(f"# {self.command[-1]} log ({self.log.name}), last lines:\n{tail}", file=sys.stderr)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def postgres_database() -> tuple[str, Any] | None:
    """A fresh database on the PostgreSQL server (its URL, and a function that drops it), or None."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        name = f"wfm_bench_ups_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        print(f"# PostgreSQL not reachable ({exc.__class__.__name__}): its rows are left out", file=sys.stderr)
        return None

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False), drop


# ================================================================ one backend

@dataclass
class Timings:
    wfm: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)


@dataclass
class BackendResult:
    name: str
    queries: dict[str, Timings]
    claims: int
    wfm_claims_per_s: list[float]  # one rate a round (`claim_rounds`)
    baseline_claims_per_s: list[float]
    durable_claims_per_s: list[float]  # the durable claims baseline (run_durable_claims_server)


def prepare(name: str, url: str, worklist: Worklist, args) -> tuple[list[Planned], list[Planned], list[str]]:
    """Seed the backend, check the seeded rows, plan the queries: (warm-up, measured, UIDs to claim).
    Shared with bench/upsrs.py."""
    sizes = worklist.sizes
    started = time.perf_counter()
    (seed_sqlite if url.startswith("sqlite") else seed_postgres)(url, worklist, analyze=not args.no_analyze)
    catalog = worklist.catalog
    print(f"# {name}: seeded {sizes.scheduled:,} SCHEDULED + {sizes.finished:,} finished workitems "
          f"({catalog.seq_rows:,} workitem_seq_item rows) in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)
    check_samples(catalog)
    warmup, measured = plan_queries(catalog, sizes, args.repeats, args.seed)
    if args.explain:
        explain(name, url, measured)
    rng = random.Random(args.seed + 2)
    to_claim = [w.uid for w in rng.sample(catalog.scheduled, min(len(catalog.scheduled), args.claims + 5))]
    return warmup, measured, to_claim


def server_env(url: str, port: int, **more: str) -> dict[str, str]:
    """The environment of a benchmarked `wfm serve` (shared with bench/upsrs.py): HTTP off unless `more`
    turns it on (its default port may be taken)."""
    return {"WFM_DATABASE_URL": url, "WFM_HOST": "127.0.0.1", "WFM_PORT": str(port), "WFM_LOG_LEVEL": "WARNING",
            # keep the retention purge away from the seeded finished workitems
            "WFM_UPS_RETENTION_HOURS": str(24 * 365 * 100), "WFM_HTTP_PORT": "0", **more}


def run_backend(name: str, url: str, worklist: Worklist, args, tmp: Path) -> BackendResult:
    warmup, measured, to_claim = prepare(name, url, worklist, args)
    infos = claim_infos(to_claim)
    timings = {kind: Timings() for kind in QUERY_NAMES}
    runs = [(q, False) for q in warmup] + [(q, True) for q in measured]  # (query, timed)
    uids_file = tmp / f"claims-{name}.txt"
    uids_file.write_text("\n".join(uid for uid, _ in infos))
    claims_url = f"sqlite:///{tmp / 'durable-claims.db'}" if url.startswith("sqlite") else url
    with contextlib.ExitStack() as servers:
        # --- wfm serve: the measured queries (their answers captured for the baseline)
        port = free_port()
        servers.enter_context(Process([sys.executable, "-m", "workflow", "serve"], port, tmp / f"wfm-{name}.log",
                                      server_env(url, port)))
        ports = {"wfm": port}
        answers: dict[str, list[dict]] = {}
        with contextlib.closing(Client(port, "WFM")) as client:
            for q, timed in runs:
                q.key = client.key(q.ds)
                kept: list = []
                seconds, q.matches = client.find(q.ds, kept)
                answers[q.key] = [ds.to_json_dict() for ds in kept]  # after the clock stopped
                if timed:
                    timings[q.kind].wfm.append(seconds)
                    timings[q.kind].matches.append(q.matches)
        answers_file = tmp / f"answers-{name}.json"
        answers_file.write_text(json.dumps(answers))
        del answers

        # --- the baseline: same queries, same order, same answers
        port = free_port()
        servers.enter_context(Process([sys.executable, __file__, "--baseline-server", str(port), str(answers_file)],
                                      port, tmp / f"baseline-{name}.log"))
        ports["baseline"] = port
        with contextlib.closing(Client(port, "BASELINE")) as client:
            for q, timed in runs:
                if client.key(q.ds) != q.key:
                    raise RuntimeError("the baseline association encodes identifiers differently")
                seconds, matches = client.find(q.ds)
                if matches != q.matches:
                    raise RuntimeError(f"the baseline answered {matches} matches where wfm answered {q.matches}")
                if timed:
                    timings[q.kind].baseline.append(seconds)

        # --- the durable claims baseline: the same claims, against its own table on the same backend
        port = free_port()
        servers.enter_context(Process([sys.executable, __file__, "--durable-claims-server", str(port), claims_url,
                                       str(uids_file)], port, tmp / f"durable-{name}.log"))
        ports["durable"] = port
        # the claims on associations of their own: one left idle through the other's queries would time out
        clients = {server: servers.enter_context(contextlib.closing(Client(at, "WFM" if server == "wfm" else
                                                                          "BASELINE")))
                   for server, at in ports.items()}
        rates = claim_rounds(clients, infos, args.rounds)
    answers_file.unlink()
    return BackendResult(name, timings, args.claims, rates["wfm"], rates["baseline"], rates["durable"])


def claim_rounds(clients: dict[str, "Client"], infos: list[tuple[str, Dataset]], rounds: int) -> dict[str, list[float]]:
    """Claims/s of each server in each of `rounds` rounds: the servers take turns within a round, in an
    order rotated from round to round, each claiming the round's share of `infos` (5 first as a warm-up),
    so that a machine drifting over minutes weighs on all of them alike."""
    for client in clients.values():
        client.claims(infos[:5])
    infos = infos[5:]
    names = list(clients)
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        share = infos[r * len(infos) // rounds:(r + 1) * len(infos) // rounds]
        for n in names[r % len(names):] + names[:r % len(names)]:
            rates[n].append(len(share) / clients[n].claims(share))
    return rates


def explain(name: str, url: str, measured: list[Planned]) -> None:
    """The SQL plan of the first measured query of each kind, and its time run in this process."""
    from pydicom.uid import ExplicitVRLittleEndian
    from sqlalchemy import text

    from workflow.dimse.dicom_json import dataset_bytes_to_json
    from workflow.ups.rules.matching import parse_query
    from workflow.store.engine import make_engine
    from workflow.ups.query import matching_select

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            for kind in QUERY_NAMES:
                q = next(q for q in measured if q.kind == kind)
                ident = dataset_bytes_to_json(encode(q.ds, False, True), str(ExplicitVRLittleEndian))
                stmt = matching_select(parse_query(ident))
                sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    n = len(conn.execute(text(sql)).all())
                    times.append(time.perf_counter() - t0)
                prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
                plan = [" | ".join(str(c) for c in r) for r in conn.execute(text(prefix + sql))]
                shown = re.sub(r"^SELECT .*? FROM workitem ", "SELECT workitem.* FROM workitem ",
                               " ".join(sql.split()))
                print(f"# {name} {QUERY_NAMES[kind]}: {n} rows, SQL alone {1000 * min(times):.1f} ms "
                      f"(best of 5)\n#   {shown}\n#   " + "\n#   ".join(plan), file=sys.stderr)
    finally:
        engine.dispose()


# ================================================================ main

def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def print_tables(results: list[BackendResult]) -> bool:
    """Print the tables; True when every query kept to <= MAX_MATCHES matches."""
    header = (f"{'backend':<11} {'query':<34} {'matches':>7} {'max':>4} {'wfm p50':>8} {'wfm p95':>8} "
              f"{'base p50':>8} {'base p95':>8} {'p95 ratio':>9} {'p95<=100ms':>10}")
    print(header)
    print("-" * len(header))
    fits = True
    for r in results:
        for kind, t in r.queries.items():
            w50, w95 = percentile(t.wfm, 50) * 1000, percentile(t.wfm, 95) * 1000
            b50, b95 = percentile(t.baseline, 50) * 1000, percentile(t.baseline, 95) * 1000
            most = max(t.matches)
            fits &= most <= MAX_MATCHES
            print(f"{r.name:<11} {QUERY_NAMES[kind]:<34} {statistics.mean(t.matches):>7.1f} {most:>4} "
                  f"{w50:>8.1f} {w95:>8.1f} {b50:>8.1f} {b95:>8.1f} {w95 / b95:>9.1f} "
                  f"{'yes' if w95 <= TARGET_MS else 'NO':>10}")
    print("(latencies in ms, from C-FIND-RQ to the final response; baseline = bare pynetdicom SCP yielding "
          "the same answers)")
    print()
    header = (f"{'backend':<11} {'claims':>6} {'rounds':>6} {'wfm claims/s':>12} {'baseline/s':>10} "
              f"{'wfm/baseline':>12} {'(range)':>13} {'durable/s':>9} {'durable/baseline':>16} {'wfm/durable':>11} "
              f"{'(range)':>13}")
    print(header)
    print("-" * len(header))
    for r in results:
        ours, bare, durable = r.wfm_claims_per_s, r.baseline_claims_per_s, r.durable_claims_per_s
        print(f"{r.name:<11} {r.claims:>6} {len(ours):>6} {statistics.median(ours):>12.1f} "
              f"{statistics.median(bare):>10.1f} {_ratio(ours, bare)} {statistics.median(durable):>9.1f} "
              f"{_ratio(durable, bare, with_range=False):>16} {_ratio(ours, durable)}")
    print("(N-ACTION 1 to IN PROGRESS, one association; baseline = bare pynetdicom SCP answering Success, the "
          "target's; durable = the least a durable claim handler does: decode, lock the row, check, update, "
          "commit, with the raw driver; claims/s: median of the rounds; a ratio: the median of its rounds' "
          "ratios, the servers taking turns within each round, with the lowest and highest round)")
    return fits


def _ratio(ours: list[float], theirs: list[float], with_range: bool = True) -> str:
    ratios = [a / b for a, b in zip(ours, theirs)]
    median = f"{statistics.median(ratios):.3f}"
    return f"{median:>12} {f'({min(ratios):.2f}-{max(ratios):.2f})':>13}" if with_range else median


def arguments(description: str) -> argparse.ArgumentParser:
    """The options of the UPS benchmarks (shared with bench/upsrs.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument("--scheduled", type=int, default=100_000, help="SCHEDULED workitems (full size)")
    parser.add_argument("--finished", type=int, default=1_000_000, help="COMPLETED/CANCELED workitems")
    parser.add_argument("--repeats", type=int, default=200, help="searches per query type")
    parser.add_argument("--claims", type=int, default=1_000, help="workitems claimed per server")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seed", type=int, default=20261123, help="random seed of the data and the queries")
    parser.add_argument("--explain", action="store_true", help="print the SQL plan of each query type (stderr)")
    parser.add_argument("--no-analyze", action="store_true",
                        help="no ANALYZE after seeding, as in a database `wfm serve` created (it never runs "
                             "ANALYZE; PostgreSQL's autovacuum may still analyze during the run)")
    return parser


def sizes_of(parser: argparse.ArgumentParser, args) -> Sizes:
    if args.smoke:
        args.scheduled, args.finished, args.repeats, args.claims = 200, 1_000, 5, 20
    sizes = Sizes(args.scheduled, args.finished)
    if args.claims + 5 > sizes.scheduled:
        parser.error("--claims must be smaller than --scheduled")
    print(f"# {sizes.labels:,} worklist labels; query (b) window: "
          f"{'one day' if sizes.window_hours >= 24 else f'{sizes.window_hours} h'}", file=sys.stderr)
    return sizes


def backends(args, tmp: Path) -> Iterator[tuple[str, str]]:
    """(name, database URL) of each backend asked for, each dropped once the caller is done with it."""
    if args.backend in ("sqlite", "both"):
        yield "SQLite", f"sqlite:///{tmp / 'ups.db'}"
        for leftover in tmp.glob("ups.db*"):
            leftover.unlink()
    if args.backend in ("postgresql", "both"):
        database = postgres_database()
        if database is not None:
            url, drop = database
            try:
                yield "PostgreSQL", url
            finally:
                drop()


def main() -> int:
    parser = arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-server", nargs=2, metavar=("PORT", "ANSWERS"), help=argparse.SUPPRESS)
    parser.add_argument("--durable-claims-server", nargs=3, metavar=("PORT", "URL", "UIDS"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of claims, the three servers taking turns in each (--claims split among them)")
    args = parser.parse_args()
    if args.durable_claims_server:
        port, url, uids_file = args.durable_claims_server
        run_durable_claims_server(int(port), url, uids_file)
        return 0
    if args.baseline_server:
        run_baseline_server(int(args.baseline_server[0]), args.baseline_server[1])
        return 0
    sizes = sizes_of(parser, args)
    if not 1 <= args.rounds <= args.claims:
        parser.error("--rounds must be between 1 and --claims")
    results: list[BackendResult] = []
    with tempfile.TemporaryDirectory(prefix="wfm-bench-ups-") as tmp:
        for name, url in backends(args, Path(tmp)):
            results.append(run_backend(name, url, Worklist(sizes, args.seed), args, Path(tmp)))
    fits = print_tables(results)
    if not fits:
        print(f"# some query returned more than {MAX_MATCHES} matches: the seeded data does not fit the "
              "benchmark's assumptions", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
