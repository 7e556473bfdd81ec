#!/usr/bin/env python3
"""IAN ingest throughput: `wfm serve` on SQLite and PostgreSQL against a ceiling measured in the
same run, a bare pynetdicom IAN SCP whose handler only decodes the data set (every element of every
item; TCP_NODELAY on both ends, as on ours). Our ratio to that ceiling is the figure to watch.

`wfm serve` runs pynetdicom's reactors event-driven (src/workflow/dimse/event_driven.py), stock
pynetdicom polls every millisecond: part of our lead over the ceiling is that transport, not the
handler. So the same ceiling runs a second time on our transport ("ceiling, wfm transport"), and the
last column gives our throughput against that one: the handler's own cost, transport set aside.

    python bench/ian_ingest.py            # full size (run by hand)
    python bench/ian_ingest.py --smoke    # tiny, to keep the script working (the test suite runs it)
    python bench/ian_ingest.py --postgres-locale en_US.UTF-8   # also on a database of that collation

Every server runs in its own process. The client is a raw DICOM replay client (rawscu.py) sending
pre-encoded IANs at ~0.1 ms of CPU each, so the servers, not the client, set the pace. Commits on
SQLite are durable (WAL, synchronous=FULL).

The servers run side by side and take turns: each mode's IANs go out in `--rounds` rounds, every
server getting its share of a round in turn (the order rotated each round), each share waiting for
the servers before it to go quiet. A ratio is the median of its rounds' ratios, each taken against
the ceiling's share of the same round, and the range beside it shows their spread: on a shared
machine the speed drifts over minutes, and servers measured one after another, minutes apart, were
compared under different conditions (an A/A run of the sequential bench put the same code 0.19 apart).
"""

from __future__ import annotations

import argparse
import os
import statistics
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import InstanceAvailabilityNotification

from rawscu import RawAssociation
from workflow.dimse.nodelay import NoDelayAE, NoDelayAssociationServer

IAN = str(InstanceAvailabilityNotification)
CEILING, CEILING_OURS = "ceiling (decode only)", "ceiling, wfm transport"

POSTGRES_URL = os.environ.get("WFM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# ---------------------------------------------------------------- the ceiling server (own process)

def _walk(ds: Dataset) -> int:
    n = 0
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                n += _walk(item)
        else:
            elem.value  # noqa: B018  (converts the raw element: the decoding work)
            n += 1
    return n


def run_ceiling_server(port: int, event_driven: bool = False) -> None:
    from pynetdicom import _config, evt
    _config.LOG_HANDLER_LEVEL = "none"
    if event_driven:
        from workflow.dimse import event_driven as transport
        transport.install()

    def on_n_create(event):
        _walk(event.attribute_list)
        return 0x0000, None

    ae = NoDelayAE(ae_title="CEILING")
    ae.add_supported_context(InstanceAvailabilityNotification, [ImplicitVRLittleEndian])
    ae.maximum_associations = 50
    server = ae.make_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_N_CREATE, on_n_create)],
                            server_class=NoDelayAssociationServer)
    server.serve_forever()


# ---------------------------------------------------------------- the client

def make_ian(instances: int) -> Dataset:
    ds = Dataset()
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.StudyInstanceUID = generate_uid()
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.ReferencedSOPSequence = []
    for _ in range(instances):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = generate_uid()
        item.InstanceAvailability = "ONLINE"
        item.RetrieveAETitle = "PACS"
        item.RetrieveURL = f"http://pacs.example/wado/{item.ReferencedSOPInstanceUID}"
        series.ReferencedSOPSequence.append(item)
    ds.ReferencedSeriesSequence = [series]
    return ds


def prepare(count: int, instances: int) -> list[bytes]:
    """IANs encoded (Implicit VR Little Endian) before the clock starts."""
    return [encode(make_ian(instances), True, True) for _ in range(count)]


def _associate(port: int, called: str) -> RawAssociation:
    return RawAssociation("127.0.0.1", port, called, "BENCH", IAN, str(ImplicitVRLittleEndian), timeout=120)


def _send(assoc: RawAssociation, encoded: bytes) -> None:
    status = assoc.n_create(IAN, generate_uid(), encoded)
    if status != 0:
        raise RuntimeError(f"IAN refused with status 0x{status:04X}")


def run_mode(port: int, called: str, ians: list[bytes], new_association_each: bool) -> float:
    start = time.perf_counter()
    if new_association_each:
        for encoded in ians:
            assoc = _associate(port, called)
            _send(assoc, encoded)
            assoc.release()
    else:
        assoc = _associate(port, called)
        for encoded in ians:
            _send(assoc, encoded)
        assoc.release()
    return time.perf_counter() - start


# ---------------------------------------------------------------- servers under test

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@dataclass
class Server:
    name: str
    called: str
    command: list[str]
    port: int
    env: dict
    cleanup: object = None


def postgres_database(locale: str | None = None) -> tuple[str, object] | None:
    """A new database (`locale`: its collation and character type, else the server's default)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        name = f"wfm_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            options = f" TEMPLATE template0 LC_COLLATE '{locale}' LC_CTYPE '{locale}'" if locale else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{options}'))
    except Exception as exc:  # noqa: BLE001
        print(f"# PostgreSQL not reachable ({exc.__class__.__name__}): its rows are left out", file=sys.stderr)
        return None

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False), drop


def servers(tmp: Path, compare_src: str | None = None, locale: str | None = None) -> list[Server]:
    out = []
    port = free_port()
    out.append(Server(CEILING, "CEILING", [sys.executable, __file__, "--ceiling-server", str(port)], port, {}))
    port = free_port()
    out.append(Server(CEILING_OURS, "CEILING", [sys.executable, __file__, "--ceiling-server", str(port),
                                                "--event-driven"], port, {}))
    builds = [("wfm", {})] + ([("before", {"PYTHONPATH": compare_src})] if compare_src else [])
    for label, extra in builds:
        databases = [(f"{label}, SQLite", lambda: (f"sqlite:///{tmp / f'{label}.db'}", None)),
                     (f"{label}, PostgreSQL", postgres_database)]
        if locale:
            databases.append((f"{label}, PostgreSQL {locale}", lambda: postgres_database(locale)))
        for name, make in databases:
            url_and_drop = make()
            if url_and_drop is None:
                continue
            url, drop = url_and_drop
            port = free_port()
            env = {"WFM_DATABASE_URL": url, "WFM_HOST": "127.0.0.1", "WFM_PORT": str(port),
                   "WFM_MAX_ASSOCIATIONS": "50", "WFM_LOG_LEVEL": "WARNING",
                   "WFM_HTTP_PORT": "0", **extra}  # HTTP off: its default port may be taken
            out.append(Server(name, "WFM", [sys.executable, "-m", "workflow", "serve"], port, env, drop))
    return out


MODES = [
    ("10 instances/IAN, one association", 10, False),
    ("100 instances/IAN, one association", 100, False),
    ("10 instances/IAN, new association each", 10, True),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument("--ians", type=int, default=500, help="IANs per mode and server (full size; half as many "
                        "100-instance IANs)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds each mode's IANs are split into, the "
                        "servers taking turns in each")
    parser.add_argument("--compare-src", metavar="DIR", help="also run the server from another source tree "
                        "(its src/ folder, e.g. `git archive` of an earlier commit) as 'before'")
    parser.add_argument("--postgres-locale", metavar="LOCALE",
                        help="also run each server on a PostgreSQL database of this collation (e.g. en_US.UTF-8, "
                             "a cluster's usual default), beside one of the server's default")
    parser.add_argument("--ceiling-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--event-driven", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_server:
        run_ceiling_server(args.ceiling_server, args.event_driven)
        return 0
    if args.ians < 1 or args.rounds < 1:
        parser.error("--ians and --rounds must be at least 1")
    count, rounds = (3, 2) if args.smoke else (args.ians, args.rounds)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        planned = servers(Path(tmp), args.compare_src, args.postgres_locale)
        for server in planned:  # its database dropped at the end, after every server stopped
            if server.cleanup:
                stack.callback(server.cleanup)
        live = [(server, start(server, stack)) for server in planned]
        results = measure(live, count, rounds)
    print_table(results)
    return 0


def start(server: Server, stack: ExitStack) -> subprocess.Popen:
    """`server` started, listening and warmed up; stopped when `stack` closes."""
    proc = subprocess.Popen(server.command, env={**os.environ, **server.env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(stop, proc)
    wait_listening(server.port, proc)
    run_mode(server.port, server.called, prepare(2, 10), False)  # warm-up
    settled_cpu(proc.pid)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


@dataclass
class Tally:
    """One server's IANs in one mode, over the rounds."""
    ians: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    rates: list[float] = field(default_factory=list)  # IAN/s, one per round

    @property
    def rate(self) -> float:
        return self.ians / self.seconds


def measure(live: list[tuple[Server, subprocess.Popen]], count: int, rounds: int) -> dict[tuple[str, str], Tally]:
    results: dict[tuple[str, str], Tally] = {}
    for mode, instances, new_assoc in MODES:
        n = count if instances == 10 else max(1, count // 2)
        shares = [n // rounds + (1 if r < n % rounds else 0) for r in range(min(rounds, n))]
        for r, share in enumerate(shares):
            for server, proc in live[r % len(live):] + live[:r % len(live)]:
                ians = prepare(share, instances)
                cpu = process_cpu(proc.pid)
                elapsed = run_mode(server.port, server.called, ians, new_assoc)
                tally = results.setdefault((server.name, mode), Tally())
                tally.ians += share
                tally.seconds += elapsed
                tally.rates.append(share / elapsed)
                # The server's CPU for these IANs, its background work after the last reply included; the
                # next server starts once this one is quiet.
                tally.cpu += settled_cpu(proc.pid) - cpu
    return results


def against(tally: Tally, base: Tally) -> list[float]:
    """`tally`'s rate against `base`'s, round by round."""
    return [ours / theirs for ours, theirs in zip(tally.rates, base.rates)]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled_cpu(pid: int, quiet: float = 0.5, timeout: float = 30.0) -> float:
    """The process's CPU once it has stopped using any for `quiet` seconds (its workers done)."""
    deadline = time.monotonic() + timeout
    before = process_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = process_cpu(pid)
        if now - before < 0.02:
            return now
        before = now
    return before


def print_table(results: dict[tuple[str, str], Tally]) -> None:
    """Throughput against the ceiling (the median of the rounds' ratios, and their range), and (steadier
    on a shared machine) the server's CPU per IAN against the ceiling's: `cpu vs ceiling` = ceiling CPU
    / our CPU, 1.00 = as cheap as decoding only; `vs ceiling, wfm transport`: throughput against the
    ceiling on our event-driven transport (median of the rounds). IAN/s: all rounds together."""
    names = list(dict.fromkeys(name for name, _ in results))
    header = (f"{'server':<30} {'mode':<40} {'IAN/s':>8} {'inst/s':>9} {'vs ceiling':>10} {'range':>11}"
              f" {'CPU ms/IAN':>10} {'cpu vs ceiling':>14} {'vs ceiling, wfm transport':>25}")
    print(header)
    print("-" * len(header))
    for mode, instances, _ in MODES:
        ceiling, ours = results.get((CEILING, mode)), results.get((CEILING_OURS, mode))
        for name in names:
            tally = results.get((name, mode))
            if tally is None:
                continue
            ratios = against(tally, ceiling) if ceiling else []
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
            cpu = tally.cpu / tally.ians
            cpu_ratio = f"{ceiling.cpu / tally.cpu * tally.ians / ceiling.ians:.2f}" if ceiling and tally.cpu else "-"
            transport = f"{statistics.median(against(tally, ours)):.2f}" if ours else "-"
            print(f"{name:<30} {mode:<40} {tally.rate:>8.1f} {tally.rate * instances:>9.0f} {ratio:>10} {spread:>11}"
                  f" {cpu * 1000:>10.2f} {cpu_ratio:>14} {transport:>25}")
    print(f"(ratios: the median of {max(len(t.rates) for t in results.values())} rounds, the servers taking turns "
          "in each; range: the lowest and highest round)")


if __name__ == "__main__":
    sys.exit(main())
