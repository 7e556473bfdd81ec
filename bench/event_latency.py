#!/usr/bin/env python3
"""Event latency (P5): from a state change (a performer's claim, N-ACTION to IN PROGRESS, sent) to its
N-EVENT-REPORT (UPS State Report) arriving at a globally subscribed Event SCP. Measured on an idle
server, then while the server ingests IANs at 80% of the capacity measured in the same run. Targets:
p95 <= 15 ms idle, <= 50 ms under load.

    python bench/event_latency.py                       # full size, both backends (by hand)
    python bench/event_latency.py --smoke               # tiny, to keep the script working (tests run it)
    python bench/event_latency.py --compare-src DIR     # also an earlier source tree, as 'before'

`wfm serve` runs in its own process with its shipped defaults. The subscriber runs in this process; the
IAN load comes from a separate process (the raw replay client of bench/rawscu.py, 10-instance IANs
encoded before the clock starts, paced to the target rate), so the client's work does not slow the
subscriber. Claims are 50 ms apart (a busy subscriber: the server may keep its association open).

A floor is measured in the same run, idle, on each backend: the least an announced durable claim does
(`run_floor_server`: bench/ups_find.py's durable claim handler with the raw driver, its event written
in the claim's transaction, and after the commit the State Report sent over an association kept open
to the subscriber). It shows how much of the latency this machine's transport and disk take whatever
the server; `wfm/floor` is our p95 over the floor's. This process (performer and subscriber) runs the
event-driven transport wfm serve ships, as bench/ups_find.py's client does: polling, it added up to a
millisecond at each hand-off to both sides.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import (UnifiedProcedureStepEvent, UnifiedProcedureStepPull, UnifiedProcedureStepPush,
                                  UnifiedProcedureStepWatch)

from ian_ingest import _associate, free_port, make_ian, postgres_database, wait_listening
from pynetdicom.dsutils import encode
from ups_find import durable_claims, serve_until_signalled
from workflow.dimse import event_driven
from workflow.dimse.nodelay import NoDelayAE

PUSH, PULL, WATCH = UnifiedProcedureStepPush, UnifiedProcedureStepPull, UnifiedProcedureStepWatch
GLOBAL = "1.2.840.10008.5.1.4.34.5"
SUBSCRIBER = "LATSUB"
GAP = 0.05  # seconds between claims


class Subscriber:
    """An Event SCP noting when each workitem's IN PROGRESS State Report arrives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.reported: set[str] = set()  # workitems any report was about
        self._cond = threading.Condition()
        ae = NoDelayAE(ae_title=SUBSCRIBER)
        ae.add_supported_context(UnifiedProcedureStepEvent)
        ae.add_supported_context(PUSH)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])

    def _on_report(self, event):
        at = time.perf_counter()
        info = event.event_information
        uid = str(event.request.AffectedSOPInstanceUID)
        with self._cond:
            self.reported.add(uid)
            if event.request.EventTypeID == 1 and getattr(info, "ProcedureStepState", None) == "IN PROGRESS":
                self.arrived[uid] = at
            self._cond.notify_all()
        return 0x0000, None

    def settle(self, uids: list[str], timeout: float = 120.0) -> None:
        """Until a report about each of `uids` has arrived (their creation's): the server has no events
        left to send, so the idle phase is idle. On a slow machine the 405 creation reports took longer
        than the warm-up and the second after it, and the first ~60 claims met them."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.reported.issuperset(uids), timeout):
                raise TimeoutError(f"{len(set(uids) - self.reported)} creation reports never arrived")

    def wait(self, uid: str, timeout: float = 30.0) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: uid in self.arrived, timeout):
                raise TimeoutError(f"no State Report for {uid}")
            return self.arrived[uid]

    def stop(self) -> None:
        self.server.shutdown()


def _workitem() -> Dataset:
    from workflow.ups.dimse.scu import new_workitem
    return new_workitem(InputReadinessState="READY", ProcedureStepLabel="latency", WorklistLabel="BENCH",
                        ScheduledProcedureStepPriority="MEDIUM")


class Performer:
    def __init__(self, port: int) -> None:
        ae = NoDelayAE(ae_title="PERFORMER")
        for context in (PUSH, PULL, WATCH):
            ae.add_requested_context(context)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        self.assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
        if not self.assoc.is_established:
            raise RuntimeError("UPS association refused")

    def subscribe(self) -> None:
        info = Dataset()
        info.ReceivingAE, info.DeletionLock = SUBSCRIBER, "FALSE"
        status, _ = self.assoc.send_n_action(info, 3, PUSH, GLOBAL, meta_uid=WATCH)
        assert status.Status == 0, f"subscribe: 0x{status.Status:04X}"

    def create(self, count: int) -> list[str]:
        uids = [generate_uid() for _ in range(count)]
        for uid in uids:
            status, _ = self.assoc.send_n_create(_workitem(), PUSH, uid)
            assert status.Status == 0, f"N-CREATE: 0x{status.Status:04X}"
        return uids

    def claim(self, uid: str) -> float:
        info = Dataset()
        info.ProcedureStepState, info.TransactionUID = "IN PROGRESS", generate_uid()
        sent = time.perf_counter()
        status, _ = self.assoc.send_n_action(info, 1, PUSH, uid, meta_uid=PULL)
        self.answered = time.perf_counter()
        assert status.Status == 0, f"claim: 0x{status.Status:04X}"
        return sent

    def close(self) -> None:
        self.assoc.release()


def measure(performer: Performer, subscriber: Subscriber, uids: list[str]) -> tuple[list[float], list[float]]:
    """Per claim: ms from the N-ACTION sent to its event arriving, and to the N-ACTION's answer (the
    change committed just before it)."""
    latencies, answers = [], []
    for uid in uids:
        sent = performer.claim(uid)
        latencies.append((subscriber.wait(uid) - sent) * 1000)
        answers.append((performer.answered - sent) * 1000)
        time.sleep(GAP)
    return latencies, answers


def after_answer(values: list[float], answers: list[float]) -> list[float]:
    """ms from the claim's answer to its event (negative: the event came first). The commit lies
    between the request and the answer, so the latency from the commit lies between this and the
    latency from the request."""
    return [v - a for v, a in zip(values, answers)]


# ---------------------------------------------------------------- the IAN load (own process)

def run_load(port: int, rate: float, seconds: float) -> None:
    """Send 10-instance IANs for `seconds` at `rate` per second (0: as fast as the server answers);
    prints the rate achieved."""
    count = int((rate or 400) * seconds) + 1
    ians = [encode(make_ian(10), True, True) for _ in range(count)]
    assoc = _associate(port, "WFM")
    start = time.perf_counter()
    sent = 0
    for i, encoded in enumerate(ians):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        if time.perf_counter() - start >= seconds:
            break
        if assoc.n_create("1.2.840.10008.5.1.4.33", generate_uid(), encoded) != 0:
            raise RuntimeError("IAN refused")
        sent += 1
    elapsed = time.perf_counter() - start
    assoc.release()
    print(f"{sent / elapsed:.1f}", flush=True)


def load(port: int, rate: float, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--load", str(port), str(rate), str(seconds)],
                            stdout=subprocess.PIPE, text=True)


# ---------------------------------------------------------------- the floor (own process)

def run_floor_server(port: int, url: str, uids_file: str, subscriber_port: int) -> None:
    """The least an announced durable claim does: lock, check, update and commit durably with the raw
    driver, the event written in the same transaction (`durable_claims`), then the State Report handed
    to one thread that sends it over an association to the subscriber kept open. Left out, as off the
    measured path: marking the event delivered once answered."""
    from pynetdicom import _config, evt
    _config.LOG_HANDLER_LEVEL = "none"
    event_driven.install()
    reports: queue.Queue = queue.Queue()
    on_action, close = durable_claims(url, Path(uids_file).read_text().split(),
                                      announce=lambda queued, uid: reports.put(uid))

    def send() -> None:
        ae = NoDelayAE(ae_title="FLOOR")
        ae.add_requested_context(PUSH)
        assoc = None
        while (uid := reports.get()) is not None:
            if assoc is None or not assoc.is_established:
                assoc = ae.associate("127.0.0.1", subscriber_port, ae_title=SUBSCRIBER)
            info = Dataset()
            info.ProcedureStepState, info.InputReadinessState = "IN PROGRESS", "READY"
            assoc.send_n_event_report(info, 1, PUSH, uid)
        if assoc is not None:
            assoc.release()

    sender = threading.Thread(target=send, name="floor-sender", daemon=True)
    sender.start()
    serve_until_signalled(port, [(evt.EVT_N_ACTION, on_action)])
    reports.put(None)
    sender.join(10)
    close()


def run_floor(url: str, args, tmp: Path) -> tuple[list[float], list[float]]:
    """The floor's idle latencies and claim answers, as `measure` gives them."""
    subscriber = Subscriber()
    port = free_port()
    uids = [generate_uid() for _ in range(args.events + 5)]
    uids_file = tmp / "floor-uids.txt"
    uids_file.write_text("\n".join(uids))
    proc = subprocess.Popen([sys.executable, __file__, "--floor-server", str(port), url, str(uids_file),
                             str(subscriber.port)], stdout=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        performer = Performer(port)
        measure(performer, subscriber, uids[:5])  # warm-up
        time.sleep(1.0)
        idle = measure(performer, subscriber, uids[5:])
        performer.close()
        return idle
    finally:
        proc.terminate()
        proc.wait(60)
        subscriber.stop()


# ---------------------------------------------------------------- one server

def run_server(name: str, url: str, env_extra: dict, args, tmp: Path) -> dict:
    subscriber = Subscriber()
    port = free_port()
    config = tmp / f"{name.replace(', ', '-')}.toml"
    config.write_text(f'[[remote_ae]]\nae_title = "{SUBSCRIBER}"\nhost = "127.0.0.1"\nport = {subscriber.port}\n')
    env = {**os.environ, "WFM_DATABASE_URL": url, "WFM_HOST": "127.0.0.1", "WFM_PORT": str(port),
           "WFM_HTTP_PORT": "0", "WFM_MAX_ASSOCIATIONS": "50", "WFM_LOG_LEVEL": "WARNING",
           "WFM_CONFIG": str(config), **env_extra}
    proc = subprocess.Popen([sys.executable, "-m", "workflow", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        performer = Performer(port)
        performer.subscribe()
        uids = performer.create(args.events * 2 + 5)
        subscriber.settle(uids)
        measure(performer, subscriber, uids[:5])  # warm-up
        time.sleep(1.0)
        idle = measure(performer, subscriber, uids[5:5 + args.events])
        capacity_proc = load(port, 0, args.capacity_seconds)
        capacity = float(capacity_proc.communicate(timeout=600)[0].strip())
        time.sleep(1.0)  # the server's background work for the capacity run settles
        target = 0.8 * capacity
        duration = args.events * (GAP + 0.02) + 3
        load_proc = load(port, target, duration)
        time.sleep(1.5)  # the load is under way (its IANs are encoded first)
        loaded = measure(performer, subscriber, uids[5 + args.events:])
        achieved = float(load_proc.communicate(timeout=600)[0].strip())
        performer.close()
        return {"idle": idle, "loaded": loaded, "capacity": capacity, "target": target, "achieved": achieved}
    finally:
        proc.terminate()
        proc.wait(60)
        subscriber.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def print_table(rows: list, floors: dict) -> None:
    header = (f"{'server':<22} {'phase':<34} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'target':>7} {'met':>4}"
              f" {'wfm/floor':>9} {'claim answer p50/p95':>21} {'after answer p50/p95':>21}")
    print(header)
    print("-" * len(header))

    def line(name: str, phase: str, measured: tuple, target: float | None, floor: float | None) -> None:
        values, answers = measured
        p95 = percentile(values, 95)
        met = "" if target is None else ("yes" if p95 <= target else "no")
        ratio = "" if floor is None else f"{p95 / floor:.2f}"
        after = after_answer(values, answers)
        print(f"{name:<22} {phase:<34} {statistics.median(values):>7.1f} {p95:>7.1f} {max(values):>7.1f}"
              f" {'' if target is None else f'{target:.0f}':>7} {met:>4} {ratio:>9}"
              f" {f'{statistics.median(answers):.1f} / {percentile(answers, 95):.1f}':>21}"
              f" {f'{statistics.median(after):.1f} / {percentile(after, 95):.1f}':>21}")

    for title, measured in floors.items():
        line(f"floor, {title}", "idle", measured, None, None)
    for name, title, r in rows:
        floor = percentile(floors[title][0], 95) if title in floors else None
        line(name, "idle", r["idle"], 15.0, floor)
        line(name, f"IANs at {r['achieved']:.0f}/s (80% of {r['capacity']:.0f}/s)", r["loaded"], 50.0, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument("--events", type=int, default=200, help="claims measured per phase")
    parser.add_argument("--capacity-seconds", type=float, default=8.0, help="length of the capacity run")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--compare-src", metavar="DIR", help="also run the server from another source tree "
                        "(its src/ folder) as 'before'")
    parser.add_argument("--load", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--floor-server", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(int(args.load[0]), float(args.load[1]), float(args.load[2]))
        return 0
    if args.floor_server:
        port, url, uids_file, subscriber_port = args.floor_server
        run_floor_server(int(port), url, uids_file, int(subscriber_port))
        return 0
    if args.smoke:
        args.events, args.capacity_seconds = 5, 1.0
    event_driven.install()  # the transport wfm serve ships, for the performer and the subscriber
    builds = [("wfm", {})] + ([("before", {"PYTHONPATH": args.compare_src})] if args.compare_src else [])
    rows, floors = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            if args.backend not in (backend, "both"):
                continue
            title = "SQLite" if backend == "sqlite" else "PostgreSQL"
            for label in ["floor"] + [label for label, _ in builds]:
                if backend == "sqlite":
                    url, drop = f"sqlite:///{Path(tmp) / f'{label}.db'}", None
                else:
                    made = postgres_database()
                    if made is None:
                        break
                    url, drop = made
                try:
                    if label == "floor":
                        floors[title] = run_floor(url, args, Path(tmp))
                    else:
                        name = f"{label}, {title}"
                        rows.append((name, title, run_server(name, url, dict(builds)[label], args, Path(tmp))))
                finally:
                    if drop:
                        drop()
    print_table(rows, floors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
