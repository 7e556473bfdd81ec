#!/usr/bin/env python3
"""Reconciliation at scale: 1,000,000 expected instances (10,000 studies of 100) against the
reference archive's INSTANCE-level inventory of the same holdings, beside two crawls of the same
holdings in the same run: Repository Query (paged; STUDY, then SERIES and IMAGE level per study) and
Study Root C-FIND (STUDY, then IMAGE level per study). Targets for the Inventory path (issue 16):
<= 15 s wall and <= 200 MB peak memory, the archive's production excluded (--prebuilt); each crawl's
time is printed as a ratio to it.

    python bench/reconcile.py                  # full size, by hand (each crawl takes over ten minutes)
    python bench/reconcile.py --smoke          # tiny, to keep the script working (the test suite runs it)
    python bench/reconcile.py --studies 2000 --no-crawl --no-repository --backend postgresql
    python bench/reconcile.py --no-crawl --no-repository --prebuilt --backend both --compare-src /tmp/base
        # also the Inventory path of another source tree (e.g. `git archive` of a base commit, unpacked),
        # on the same seeded data and archive, in the same run: the before/after ratio

Each `wfm reconcile run` is its own process, so its wall time and peak RSS (VmHWM, sampled every
50 ms until it exits) are its own.
The archive (python -m refarchive) also runs in its own process; with --prebuilt it holds a COMPLETE
inventory before the run (the client finds it with Inventory FIND), otherwise the client asks for
one with Inventory Creation and the archive's production time counts (with --prebuilt its production
time is printed apart: the time from its start to its listening). Our database is filled by bulk
INSERT from the seed (as if every instance had been announced by IAN), then the archive is made to
differ: instances lost, set OFFLINE, and held without announcement, so the run has findings to write
and the bench checks their numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, insert

from ian_ingest import free_port, postgres_database, wait_listening
from refarchive.holdings import Holdings
from workflow.store import migrate
from workflow.ian.tables import Instance, InstanceLocation, Notification

AET = "REFARCH"
LOST, OFFLINE, UNANNOUNCED = 25, 10, 5  # the seeded discrepancies
ROOT = "1.2.826.0.1.3680043.10.543.9"


def seed_archive(db_path: Path, studies: int, series: int, per_series: int):
    holdings = Holdings(db_path, default_retrieve_ae=AET)
    seeded = holdings.seed(studies, series, per_series, root=ROOT, first_study=1)
    step = max(1, studies // (LOST + OFFLINE + 1))
    for n in range(LOST):
        holdings.lose_instance(seeded.instance_uid(n * step % studies, 0, 0))
    for n in range(OFFLINE):
        holdings.set_availability("OFFLINE", instance=seeded.instance_uid((n * step + step // 2) % studies, 0, 1))
    for n in range(UNANNOUNCED):
        holdings.add_unannounced(study_uid=seeded.study_uid(n))
    holdings.close()
    return seeded


def seed_expected(url: str, seeded, chunk: int = 20_000) -> None:
    """Our side: every seeded instance announced ONLINE at the archive (one bulk notification row)."""
    engine = create_engine(url)
    migrate.upgrade(engine)
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with engine.begin() as conn:
        note_id = conn.execute(insert(Notification).values(
            sop_instance_uid=f"{ROOT}.999", study_instance_uid=seeded.study_uid(0), calling_ae_title=AET,
            peer_address="bench", received_at=at, instance_count=seeded.instance_count, content_sha256="0" * 64,
            dataset_json="{}")).inserted_primary_key[0]
    rows = ((seeded.study_uid(k), seeded.series_uid(k, s), seeded.instance_uid(k, s, i))
            for k in range(seeded.studies) for s in range(seeded.series_per_study)
            for i in range(seeded.instances_per_series))
    batch: list[tuple] = []

    def flush() -> None:
        with engine.begin() as conn:
            numbered = conn.execute(insert(Instance).returning(Instance.id), [dict(
                sop_instance_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.2", series_instance_uid=series,
                study_instance_uid=study, first_notified_at=at, last_notified_at=at, last_notification_id=note_id)
                for study, series, sop in batch]).scalars().all()
            conn.execute(insert(InstanceLocation), [dict(instance_id=number, retrieve_ae_title=AET,
                                                         availability="ONLINE", notified_at=at,
                                                         notification_id=note_id) for number in numbered])
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    if engine.dialect.name == "postgresql":
        # Autovacuum (on by default) analyses a table a tenth of which has changed; a cluster run
        # without it (this project's test machines) would plan the read of a million rows from no
        # statistics at all, as a nested loop over an estimate of a few hundred rows.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE instance, instance_location")
    engine.dispose()


# How each row lists the archive: `wfm reconcile run` options.
WAYS = {"inventory": ["--method", "inventory"],
        "repository": ["--method", "query"],  # the reference archive offers Repository Query
        "query": ["--method", "query", "--no-repository-query"]}  # the Study Root C-FIND crawl


def peak_rss_kb(proc: subprocess.Popen, every: float = 0.05) -> int:
    """The process's peak resident memory (VmHWM), read until it exits. Not wait4's ru_maxrss: on
    Linux that also counts the memory of this (large) process at the moment it forked the child."""
    peak = 0
    while True:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass  # exiting
        try:
            proc.wait(timeout=every)
            return peak
        except subprocess.TimeoutExpired:
            continue


def reconcile(url: str, port: int, method: str, workdir: Path, src: Path | None = None) -> dict:
    """One `wfm reconcile run` in its own process: wall seconds, peak RSS, the report's counts. `src`:
    the `src` directory of another source tree to run instead of this one (first on PYTHONPATH)."""
    env = {**os.environ, "WFM_DATABASE_URL": url, "WFM_LOG_LEVEL": "WARNING", "WFM_NETWORK_TIMEOUT": "600"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])])
    name = method if src is None else f"{method}-before"
    out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
    start = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "workflow", "reconcile", "run", "--ae", AET, "--host",
                                 "127.0.0.1", "--port", str(port), *WAYS[method]], env=env, cwd=workdir,
                                stdout=out, stderr=err)
        peak_kb = peak_rss_kb(proc)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"wfm reconcile run ({method}) failed:\n{err_path.read_text()}")
    out = out_path.read_text()
    run_uid = out.strip().splitlines()[-1]
    report = json.loads(subprocess.run([sys.executable, "-m", "workflow", "report", "show", run_uid],
                                       env=env, cwd=workdir, capture_output=True, text=True, check=True).stdout)
    by_reason = report["counts"].get("by_reason", report["counts"])
    if report["method"] != method:
        raise RuntimeError(f"the {method} row ran as {report['method']}")
    return {"seconds": seconds, "peak_mb": peak_kb / 1024, "status": report["status"],
            "counts": {k: v for k, v in by_reason.items() if v}}


def run_backend(name: str, url: str, args) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="wfm-bench-reconcile-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        seeded = seed_archive(workdir / "archive.db", args.studies, args.series, args.per_series)
        seed_expected(url, seeded)
        print(f"# {name}: seeded {seeded.instance_count} instances on both sides in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        port = free_port()
        archive_cmd = [sys.executable, "-m", "refarchive", "--ae-title", AET, "--port", str(port), "--db",
                       str(workdir / "archive.db"), "--log-level", "WARNING", "--record-limit", str(args.record_limit)]
        if args.prebuilt:
            archive_cmd += ["--build-inventory", "INSTANCE"]
        t0 = time.perf_counter()
        archive = subprocess.Popen(archive_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, archive, timeout=600)
            if args.prebuilt:
                print(f"# {name}: the archive produced its INSTANCE-level inventory (and started) in "
                      f"{time.perf_counter() - t0:.1f} s, before the clock", file=sys.stderr)
            results = {}
            if args.compare_src:
                results["inventory (before)"] = reconcile(url, port, "inventory", workdir, args.compare_src)
            results["inventory"] = reconcile(url, port, "inventory", workdir)
            if args.repository:
                results["repository"] = reconcile(url, port, "repository", workdir)
            if args.crawl:
                results["query"] = reconcile(url, port, "query", workdir)
        finally:
            archive.terminate()
            archive.wait(60)
    before = results.get("inventory (before)")
    if before is not None and before["counts"] != results["inventory"]["counts"]:
        raise RuntimeError(f"the two source trees disagree: {before['counts']} and {results['inventory']['counts']}")
    base = results["inventory"]["seconds"]
    for method, r in results.items():
        rows.append((name, method, r["seconds"], r["peak_mb"], r["seconds"] / base, r["status"], r["counts"]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--series", type=int, default=2, help="series per study")
    parser.add_argument("--per-series", type=int, default=50, help="instances per series")
    parser.add_argument("--record-limit", type=int, default=1000, help="study records per Inventory instance")
    parser.add_argument("--prebuilt", action="store_true", help="the archive holds a ready inventory")
    parser.add_argument("--no-crawl", dest="crawl", action="store_false", help="skip the Study Root C-FIND crawl")
    parser.add_argument("--no-repository", dest="repository", action="store_false",
                        help="skip the Repository Query crawl")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--compare-src", type=Path, metavar="DIR",
                        help="also run the Inventory path of another source tree: DIR is the tree or its src/")
    args = parser.parse_args()
    if args.compare_src:
        # The tree or its src/ (bench/ian_ingest.py takes the src/): a wrong DIR would silently run this tree.
        found = [d for d in (args.compare_src / "src", args.compare_src) if (d / "workflow" / "__init__.py").is_file()]
        if not found:
            parser.error(f"--compare-src {args.compare_src}: no workflow package there or in its src/")
        args.compare_src = found[0]
    if args.smoke:
        args.studies, args.series, args.per_series, args.record_limit = 60, 2, 3, 20
    rows = []
    with tempfile.TemporaryDirectory(prefix="wfm-bench-db-") as tmp:
        if args.backend in ("sqlite", "both"):
            rows += run_backend("SQLite", f"sqlite:///{Path(tmp) / 'wfm.db'}", args)
    if args.backend in ("postgresql", "both") and not args.smoke:
        made = postgres_database()
        if made is not None:
            url, drop = made
            try:
                rows += run_backend("PostgreSQL", url, args)
            finally:
                drop()
    instances = args.studies * args.series * args.per_series
    print(f"{'backend':<11} {'method':<19} {'seconds':>8} {'peak MB':>8} {'vs inventory':>12}  status     findings")
    for name, method, seconds, peak, ratio, status, counts in rows:
        print(f"{name:<11} {method:<19} {seconds:8.2f} {peak:8.1f} {ratio:12.2f}  {status:<10} {json.dumps(counts)}")
    print(f"{instances} expected instances; seeded: {LOST} lost, {OFFLINE} OFFLINE, {UNANNOUNCED} unannounced. "
          "targets (inventory): <= 15 s, <= 200 MB" + (", the archive's production excluded" if args.prebuilt else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
