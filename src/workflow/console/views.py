"""The console's read models: what each page shows, as plain data, read through the features' services
where they have one and by indexed queries of their tables where the console needs a cut they lack
(the worklist's keyset pages, the chart, search, a run's findings by page). No HTML here.

Speed: every list is a keyset page on an index (workitem: (state, start), (label, state, start),
start; workitem_seq_item: (sequence_tag, key, value); discrepancy: (run_id, seq)), so a page costs the
same at 1,100,000 workitems as at 100. The chart reads one fortnight of the start index and is kept
CHART_SECONDS."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from pydicom.datadict import keyword_for_tag
from sqlalchemy import Engine, and_, exists, func, or_, select

from workflow.ian.tables import Instance
from workflow.kernel.json_model import JsonDataset
from workflow.readiness.tables import RequestedProcedure
from workflow.reconcile.tables import DiscrepancyRow, ReconciliationRun
from workflow.store.engine import aware, reading
from workflow.ups.listing import parse_dicom_datetime
from workflow.ups.query import WildcardMatch
from workflow.ups.tables import OutboxEvent, Workitem, WorkitemSeqItem

W = Workitem.__table__
SEQ = WorkitemSeqItem.__table__
OUT = OutboxEvent.__table__
RUN = ReconciliationRun.__table__
FINDING = DiscrepancyRow.__table__

STATES = ("SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED")
READINESS = ("READY", "INCOMPLETE", "UNAVAILABLE")
PRIORITIES = ("HIGH", "MEDIUM", "LOW")
SORTS = {"start": "scheduled start, earliest first", "-start": "scheduled start, latest first"}
PAGE = 50
STATION_SEQ, REQUEST_SEQ = "00404025", "0040A370"
CODE_VALUE, CODE_MEANING, ACCESSION = "00080100", "00080104", "00080050"
CHART_DAYS = 14
CHART_SECONDS = 30.0
FINDINGS_PAGE = 200
EVENTS_SHOWN = 200  # event reports listed per subscriber


class BadFilter(ValueError):
    """A filter value the worklist cannot use; the message names the parameter."""


# --- the worklist ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorklistFilter:
    """The worklist's query parameters, named after the columns (a view is a bookmarkable URL)."""

    state: str = ""
    readiness: str = ""
    priority: str = ""
    worklist_label: str = ""
    station: str = ""
    patient: str = ""
    start_from: str = ""  # YYYY-MM-DD (the `from` parameter)
    start_to: str = ""  # YYYY-MM-DD (`to`)
    sort: str = "-start"
    after: str = ""  # keyset cursor: "<start column value>|<uid>" of the last row shown

    @classmethod
    def parse(cls, params: dict[str, str]) -> "WorklistFilter":
        get = lambda name: (params.get(name) or "").strip()  # noqa: E731
        f = cls(state=get("state").upper(), readiness=get("readiness").upper(), priority=get("priority").upper(),
                worklist_label=get("worklist_label"), station=get("station"), patient=get("patient"),
                start_from=get("from"), start_to=get("to"), sort=get("sort") or "-start", after=get("after"))
        for name, value, allowed in (("state", f.state, STATES), ("readiness", f.readiness, READINESS),
                                     ("priority", f.priority, PRIORITIES), ("sort", f.sort, tuple(SORTS))):
            if value and value not in allowed:
                raise BadFilter(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        for name, value in (("from", f.start_from), ("to", f.start_to)):
            if value:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise BadFilter(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None
        if f.after and "|" not in f.after:
            raise BadFilter("after: not a page cursor")
        return f

    def params(self, **changes: str) -> dict[str, str]:
        """The query parameters of this view (empty ones left out), with `changes`."""
        out = {"state": self.state, "readiness": self.readiness, "priority": self.priority,
               "worklist_label": self.worklist_label, "station": self.station, "patient": self.patient,
               "from": self.start_from, "to": self.start_to, "sort": self.sort if self.sort != "-start" else "",
               "after": self.after}
        out.update(changes)
        return {k: v for k, v in out.items() if v}

    @property
    def active(self) -> bool:
        return any(v for k, v in self.params().items() if k not in ("sort", "after"))


@dataclass
class WorklistRow:
    uid: str
    state: str
    readiness: str | None
    priority: str | None
    label: str | None
    worklist_label: str | None
    start: datetime | None  # as the workitem gives it (aware when it has an offset)
    patient_name: str
    patient_id: str | None
    stations: list[str]
    created_at: datetime
    study_uid: str | None


@dataclass
class WorklistPage:
    rows: list[WorklistRow]
    next_after: str | None  # the cursor of the next page, None on the last


def _wildcard(column, value: str, case_insensitive: bool = False):
    if "*" in value or "?" in value:
        return WildcardMatch(column, value, case_insensitive)
    return func.lower(column) == func.lower(value) if case_insensitive else column == value


def worklist_conditions(f: WorklistFilter) -> list:
    where = []
    if f.state:
        where.append(W.c.procedure_step_state == f.state)
    if f.readiness:
        where.append(W.c.input_readiness_state == f.readiness)
    if f.priority:
        where.append(W.c.priority == f.priority)
    if f.worklist_label:
        where.append(_wildcard(W.c.worklist_label, f.worklist_label))
    if f.start_from:
        where.append(W.c.scheduled_start_datetime >= f.start_from.replace("-", "") + "000000.000000")
    if f.start_to:
        where.append(W.c.scheduled_start_datetime <= f.start_to.replace("-", "") + "235959.999999")
    if f.patient:
        # Patient ID or Patient Name (stored as its alphabetic group, "Family^Given"); * and ? wild cards.
        # The name in any case, as C-FIND matches a PN (and on the same index, lower(patient_name)).
        where.append(or_(_wildcard(W.c.patient_id, f.patient), _wildcard(W.c.patient_name, f.patient, True)))
    return where


def station_condition(station: str):
    """Scheduled Station Name Code Sequence holds `station` as a code value or meaning (EXISTS on the
    sequence index). Known limit: a station holds ~0.5% of all workitems, so finding a page of them costs
    a few thousand row reads (~0.1-0.5 s at 1,100,000 workitems); with a date range it is quick."""
    s = SEQ.alias("station")
    return exists(select(s.c.item_index).where(
        s.c.workitem_uid == W.c.sop_instance_uid, s.c.sequence_tag == STATION_SEQ,
        s.c.key.in_((CODE_VALUE, CODE_MEANING)), _wildcard(s.c.value, station)))


def worklist_page(engine: Engine, f: WorklistFilter, limit: int = PAGE) -> WorklistPage:
    """One keyset page: rows after the cursor in (scheduled start, UID) order, read from the index the
    filters select (state, label or start), never an OFFSET."""
    start, uid = W.c.scheduled_start_datetime, W.c.sop_instance_uid
    where = worklist_conditions(f)
    descending = f.sort == "-start"
    if f.after:
        at, _, last = f.after.partition("|")
        if descending:
            where.append(and_(start <= at, or_(start < at, uid < last)))
        else:
            where.append(and_(start >= at, or_(start > at, uid > last)))
    order = (start.desc(), uid.desc()) if descending else (start, uid)
    stmt = (select(uid, W.c.procedure_step_state, W.c.input_readiness_state, W.c.priority,
                   W.c.procedure_step_label, W.c.worklist_label, start, W.c.patient_name, W.c.patient_id,
                   W.c.created_at, W.c.study_instance_uid, W.c.dataset_json)
            .where(*where).order_by(*order).limit(limit + 1))
    if f.station:
        stmt = stmt.where(station_condition(f.station))
    with reading(engine) as conn:
        found = conn.execute(stmt).all()
    more = len(found) > limit
    found = found[:limit]
    rows = [_worklist_row(r) for r in found]
    last = found[-1] if more and found else None
    return WorklistPage(rows, f"{last.scheduled_start_datetime or ''}|{last.sop_instance_uid}" if last else None)


def _worklist_row(r) -> WorklistRow:
    ds = json.loads(r.dataset_json)
    stations = [_code_text(item) for item in _items(ds, STATION_SEQ)]
    return WorklistRow(r.sop_instance_uid, r.procedure_step_state, r.input_readiness_state, r.priority,
                       r.procedure_step_label, r.worklist_label, parse_dicom_datetime(first_value(ds, "00404005")),
                       person_name(r.patient_name), r.patient_id, stations, aware(r.created_at),
                       r.study_instance_uid)


def live_states(engine: Engine, uids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """uid -> (state, readiness) of the workitems a page shows (primary key lookups)."""
    wanted = list(dict.fromkeys(uids))[:500]
    if not wanted:
        return {}
    with reading(engine) as conn:
        rows = conn.execute(select(W.c.sop_instance_uid, W.c.procedure_step_state, W.c.input_readiness_state)
                            .where(W.c.sop_instance_uid.in_(wanted))).all()
    return {r[0]: (r[1], r[2]) for r in rows}


# --- the chart: workitems by day of scheduled start, state and readiness -----------------------------------

@dataclass
class ChartDay:
    day: date
    counts: dict[str, int]  # "SCHEDULED READY", "SCHEDULED INCOMPLETE", ..., "IN PROGRESS", "COMPLETED", ...

    @property
    def total(self) -> int:
        return sum(self.counts.values())


CHART_SERIES = ("SCHEDULED READY", "SCHEDULED INCOMPLETE", "SCHEDULED UNAVAILABLE", "IN PROGRESS", "COMPLETED",
                "CANCELED")

_chart_cache: dict[str, tuple[float, list[ChartDay]]] = {}
_chart_lock = threading.Lock()
_chart_refreshing: set[str] = set()


def state_chart(engine: Engine, today: date | None = None, days: int = CHART_DAYS) -> list[ChartDay]:
    """Workitems per day of scheduled start over the last `days` days (today included), by state, the
    SCHEDULED ones by Input Readiness. Kept per engine: older than CHART_SECONDS, the kept one is still
    answered while a thread reads it again (a page never waits for the chart but the first time)."""
    key = engine.url.render_as_string(hide_password=True)  # one chart per database
    with _chart_lock:
        cached = _chart_cache.get(key)
        stale = cached is None or time.monotonic() - cached[0] >= CHART_SECONDS
        if cached and today is None:
            if stale and key not in _chart_refreshing:
                _chart_refreshing.add(key)
                threading.Thread(target=_refresh_chart, args=(engine, key, days), daemon=True,
                                 name="wfm-console-chart").start()
            return cached[1]
    out = read_chart(engine, today or datetime.now().date(), days)
    if today is None:
        with _chart_lock:
            _chart_cache[key] = (time.monotonic(), out)
    return out


def _refresh_chart(engine: Engine, key: str, days: int) -> None:
    try:
        out = read_chart(engine, datetime.now().date(), days)
        with _chart_lock:
            _chart_cache[key] = (time.monotonic(), out)
    except Exception:  # noqa: BLE001 - the kept chart stays; the next page asks again
        pass
    finally:
        with _chart_lock:
            _chart_refreshing.discard(key)


def read_chart(engine: Engine, today: date, days: int) -> list[ChartDay]:
    """Two grouped counts that stay in indexes where they can: by day and state from (state, start); the
    SCHEDULED ones by readiness from the same index's SCHEDULED range."""
    first_day = today - timedelta(days=days - 1)
    low = first_day.strftime("%Y%m%d") + "000000.000000"
    high = (today + timedelta(days=1)).strftime("%Y%m%d") + "000000.000000"
    start, state, readiness = W.c.scheduled_start_datetime, W.c.procedure_step_state, W.c.input_readiness_state
    day = func.substr(start, 1, 8)
    with reading(engine) as conn:
        by_state = conn.execute(select(day, state, func.count()).where(start >= low, start < high, state.in_(STATES))
                                .group_by(day, state)).all()
        by_readiness = conn.execute(select(day, readiness, func.count())
                                    .where(state == "SCHEDULED", start >= low, start < high)
                                    .group_by(day, readiness)).all()
    counts: dict[str, Counter] = defaultdict(Counter)
    for d, st, n in by_state:
        if st != "SCHEDULED":
            counts[d][st] += n
    for d, rd, n in by_readiness:
        counts[d][f"SCHEDULED {rd or 'INCOMPLETE'}"] += n
    out = []
    for n in range(days):
        d = first_day + timedelta(days=n)
        c = counts.get(d.strftime("%Y%m%d"), Counter())
        out.append(ChartDay(d, {s: c.get(s, 0) for s in CHART_SERIES}))
    return out


# --- one workitem ------------------------------------------------------------------------------------------

@dataclass
class Node:
    """One attribute of a data set for the tree view: keyword, tag, VR, value text, or its items."""

    keyword: str
    tag: str
    vr: str
    text: str = ""
    items: list[list["Node"]] = field(default_factory=list)


def attribute_tree(ds: JsonDataset) -> list[Node]:
    nodes = []
    for tag in sorted(ds):
        element = ds[tag] or {}
        vr = element.get("vr", "UN")
        keyword = keyword_for_tag(int(tag, 16)) or "Unknown"
        values = element.get("Value") or []
        if vr == "SQ":
            nodes.append(Node(keyword, f"({tag[:4]},{tag[4:]})", vr, f"{len(values)} item(s)",
                              [attribute_tree(item or {}) for item in values]))
        else:
            nodes.append(Node(keyword, f"({tag[:4]},{tag[4:]})", vr, _value_text(element, values)))
    return nodes


@dataclass
class InputSeries:
    study_uid: str
    series_uid: str
    retrieve_ae: list[str]
    instances: list[tuple[str, str, list[tuple[str, str]]]]  # (SOP Instance UID, SOP Class UID, [(AE, availability)])


def input_series(ds: JsonDataset, studies: dict[str, dict | None]) -> list[InputSeries]:
    """The Input Information Sequence by series, each instance with its availability at each location
    (from what the server knows of the study: `studies` maps a Study UID to its study report)."""
    availability: dict[str, list[tuple[str, str]]] = {}
    for report in studies.values():
        for inst in (report or {}).get("instances", []):
            availability[inst["sop_instance_uid"]] = [(loc["ae_title"], loc["availability"])
                                                      for loc in inst["locations"]]
    out: dict[tuple[str, str], InputSeries] = {}
    for item in _items(ds, "00404021"):
        study, series = first_value(item, "0020000D") or "", first_value(item, "0020000E") or ""
        entry = out.setdefault((study, series), InputSeries(study, series, [], []))
        for loc in _items(item, "0040E021"):
            ae = first_value(loc, "00080054")
            if ae and ae not in entry.retrieve_ae:
                entry.retrieve_ae.append(ae)
        for ref in _items(item, "00081199"):
            uid = first_value(ref, "00081155") or ""
            if uid not in {i[0] for i in entry.instances}:
                entry.instances.append((uid, first_value(ref, "00081150") or "", availability.get(uid, [])))
    return list(out.values())


def input_studies(ds: JsonDataset) -> list[str]:
    return list(dict.fromkeys(s for item in _items(ds, "00404021") if (s := first_value(item, "0020000D"))))


def event_history(engine: Engine, uid: str, limit: int = 200) -> list[dict[str, Any]]:
    """The event reports written for a workitem: to whom, when, status and attempts."""
    with reading(engine) as conn:
        rows = conn.execute(select(OUT.c.id, OUT.c.receiving_ae, OUT.c.event_type_id, OUT.c.status, OUT.c.attempts,
                                   OUT.c.created_at, OUT.c.last_attempt_at, OUT.c.last_error)
                            .where(OUT.c.workitem_uid == uid).order_by(OUT.c.id).limit(limit)).all()
    return [dict(r._mapping, created_at=aware(r.created_at),
                 last_attempt_at=aware(r.last_attempt_at) if r.last_attempt_at else None) for r in rows]


# --- studies ----------------------------------------------------------------------------------------------

def find_studies(engine: Engine, text: str, limit: int = 50) -> list[str]:
    """Study Instance UIDs named by `text`: a Study UID, an Accession Number, or a Patient ID or name
    (* and ? wild cards) of a workitem."""
    text = text.strip()
    if not text:
        return []
    parts = [
        select(Instance.study_instance_uid.label("uid")).where(Instance.study_instance_uid == text),
        select(W.c.study_instance_uid.label("uid")).where(W.c.study_instance_uid == text),
        select(RequestedProcedure.study_instance_uid.label("uid")).where(RequestedProcedure.accession_number == text),
        select(SEQ.c.value.label("uid")).where(SEQ.c.sequence_tag == REQUEST_SEQ, SEQ.c.key == "0020000D",
                                              SEQ.c.workitem_uid.in_(
                                                  select(SEQ.c.workitem_uid).where(SEQ.c.sequence_tag == REQUEST_SEQ,
                                                                                   SEQ.c.key == ACCESSION,
                                                                                   SEQ.c.value == text))),
        select(W.c.study_instance_uid.label("uid")).where(
            W.c.study_instance_uid.is_not(None),
            or_(_wildcard(W.c.patient_id, text), _wildcard(W.c.patient_name, text))).distinct(),
    ]
    found: set[str] = set()
    with reading(engine) as conn:
        for part in parts:  # each on its own index; a few small answers
            found.update(u for u in conn.execute(part.limit(limit)).scalars() if u)
    return sorted(found)[:limit]


@dataclass
class StudySeries:
    series_uid: str
    instances: list[dict]


def study_series(report: dict) -> list[StudySeries]:
    by: dict[str, list[dict]] = defaultdict(list)
    for inst in report["instances"]:
        by[inst["series_instance_uid"]].append(inst)
    return [StudySeries(s, items) for s, items in by.items()]


def locations_of(report: dict) -> list[str]:
    return sorted({loc["ae_title"] for inst in report["instances"] for loc in inst["locations"]})


def availability_counts(report: dict) -> dict[str, Counter]:
    """Per location: instances by availability (and "absent": not announced there)."""
    locations = locations_of(report)
    out = {ae: Counter() for ae in locations}
    for inst in report["instances"]:
        held = {loc["ae_title"]: loc["availability"] for loc in inst["locations"]}
        for ae in locations:
            out[ae][held.get(ae, "absent")] += 1
    return out


# --- reconciliation ---------------------------------------------------------------------------------------

def runs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Runs, most recent first: archive, method, scope, status, times, counts by reason."""
    with reading(engine) as conn:
        rows = conn.execute(select(RUN.c.run_uid, RUN.c.archive_ae_title, RUN.c.method, RUN.c.scope, RUN.c.status,
                                   RUN.c.started_at, RUN.c.ended_at, RUN.c.counts, RUN.c.error)
                            .order_by(RUN.c.started_at.desc()).limit(limit)).all()
    return [_run(r) for r in rows]


def run(engine: Engine, run_uid: str) -> dict[str, Any] | None:
    with reading(engine) as conn:
        r = conn.execute(select(RUN).where(RUN.c.run_uid == run_uid)).first()
    return dict(_run(r), id=r.id, archive_host=r.archive_host, archive_port=r.archive_port, cutoff=aware(r.cutoff),
                report_sha256=r.report_sha256, software_version=r.software_version) if r else None


def _run(r) -> dict[str, Any]:
    counts = json.loads(r.counts or "{}")
    by_reason = {k: v for k, v in counts.get("by_reason", {}).items() if v}
    scope = json.loads(r.scope or "{}")
    return {"run_uid": r.run_uid, "archive": r.archive_ae_title, "method": r.method, "status": r.status,
            "scope": scope, "scope_text": scope_text(scope), "started_at": aware(r.started_at),
            "ended_at": aware(r.ended_at) if r.ended_at else None, "by_reason": by_reason,
            "findings": sum(by_reason.values()), "totals": counts.get("totals", {}), "error": r.error}


def scope_text(scope: dict) -> str:
    parts = []
    if scope.get("days"):
        parts.append(f"last {scope['days']} days")
    if scope.get("modalities"):
        parts.append("modalities " + ", ".join(scope["modalities"]))
    if scope.get("study_uids"):
        parts.append(f"{len(scope['study_uids'])} studies")
    return "; ".join(parts) or "everything"


def last_runs(engine: Engine, archives: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each archive's latest run (index: archive, started_at)."""
    out = {}
    with reading(engine) as conn:
        for ae in archives:
            r = conn.execute(select(RUN.c.run_uid, RUN.c.status, RUN.c.started_at).where(RUN.c.archive_ae_title == ae)
                             .order_by(RUN.c.started_at.desc()).limit(1)).first()
            if r:
                out[ae] = {"run_uid": r.run_uid, "status": r.status, "started_at": aware(r.started_at)}
    return out


@dataclass
class FindingsPage:
    by_study: list[tuple[str, list[dict]]]
    next_after: int | None


def findings(engine: Engine, run_id: int, reason: str = "", after: int = 0,
             limit: int = FINDINGS_PAGE) -> FindingsPage:
    """A page of a run's findings in the order found (index: run_id, seq), grouped by study."""
    where = [FINDING.c.run_id == run_id, FINDING.c.seq > after]
    if reason:
        where.append(FINDING.c.reason == reason)
    with reading(engine) as conn:
        rows = conn.execute(select(FINDING.c.seq, FINDING.c.reason, FINDING.c.study_instance_uid,
                                   FINDING.c.series_instance_uid, FINDING.c.sop_instance_uid, FINDING.c.detail)
                            .where(*where).order_by(FINDING.c.seq).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(r.study_instance_uid, []).append(dict(r._mapping))
    return FindingsPage(list(grouped.items()), rows[-1].seq if more else None)


# --- events -----------------------------------------------------------------------------------------------

def events_by_subscriber(engine: Engine, shown: int = EVENTS_SHOWN) -> list[tuple[str, Counter, list[dict]]]:
    """Event reports not delivered, per subscriber: (subscriber, counts by status, its first `shown`
    in delivery order). Counted in one grouped query; listed per subscriber on its (subscriber, ...) index."""
    undelivered = OUT.c.status.in_(("PENDING", "UNDELIVERABLE"))
    with reading(engine) as conn:
        counted = conn.execute(select(OUT.c.receiving_ae, OUT.c.status, func.count()).where(undelivered)
                               .group_by(OUT.c.receiving_ae, OUT.c.status)).all()
        by: dict[str, Counter] = defaultdict(Counter)
        for ae, status, n in counted:
            by[ae][status] = n
        out = []
        for ae in sorted(by):
            rows = conn.execute(select(OUT.c.id, OUT.c.workitem_uid, OUT.c.event_type_id, OUT.c.status, OUT.c.attempts,
                                       OUT.c.created_at, OUT.c.next_attempt_at, OUT.c.last_error)
                                .where(OUT.c.receiving_ae == ae, undelivered).order_by(OUT.c.id).limit(shown)).all()
            out.append((ae, by[ae], [dict(r._mapping, created_at=aware(r.created_at),
                                          next_attempt_at=aware(r.next_attempt_at)) for r in rows]))
    return out


# --- helpers ----------------------------------------------------------------------------------------------

def person_name(stored: str | None) -> str:
    """"Family^Given^Middle" as "Family, Given Middle"."""
    if not stored:
        return ""
    family, _, rest = stored.partition("^")
    given = " ".join(p for p in rest.split("^")[:2] if p)
    return f"{family}, {given}" if given else family


def age_text(since: datetime, now: datetime | None = None) -> str:
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - since).total_seconds()))
    days, rest = divmod(seconds, 86400)
    if days:
        return f"{days} d {rest // 3600} h"
    if rest >= 3600:
        return f"{rest // 3600} h {rest % 3600 // 60} min"
    return f"{rest // 60} min"


def _items(ds: JsonDataset, tag: str) -> list[dict]:
    return [i for i in ((ds.get(tag) or {}).get("Value") or []) if isinstance(i, dict)]


def first_value(ds: JsonDataset, tag: str) -> Any:
    values = (ds.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _code_text(item: dict) -> str:
    value, meaning = first_value(item, CODE_VALUE), first_value(item, CODE_MEANING)
    return f"{value} ({meaning})" if value and meaning else (value or meaning or "")


def _value_text(element: dict, values: list) -> str:
    if "InlineBinary" in element or "BulkDataURI" in element:
        return "(binary data)"
    if not values:
        return "(empty)"
    return "\\".join(v.get("Alphabetic", "") if isinstance(v, dict) else str(v) for v in values)
