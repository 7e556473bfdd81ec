#!/usr/bin/env python3
"""`wfm inventory build` against the reference archive (Study Root C-FIND SCP) holding N studies, beside
a baseline measured in the same run: the same crawl by the bare Study Root client (STUDY, then SERIES
and IMAGE level per study, answers read and dropped). The ratio is what keeping every answer
(resumable, one transaction per study) and producing the Inventory instances cost on top of listing.

    python bench/inventory_build.py                 # 2,000 studies of 2 x 10 instances (by hand)
    python bench/inventory_build.py --smoke         # tiny, to keep the script working (the suite runs it)
    python bench/inventory_build.py --studies 500 --backend postgresql

The archive runs in its own process (python -m refarchive); each build is its own `wfm` process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ian_ingest import free_port, postgres_database, wait_listening  # noqa: E402

from workflow.reconcile.dimse.holdings_query import StudyRootHoldings  # noqa: E402

AET = "REFARCH"


def baseline(port: int) -> tuple[float, int]:
    """The bare crawl: seconds, instances listed."""
    start = time.perf_counter()
    instances = 0
    with StudyRootHoldings("BENCH", AET, "127.0.0.1", port, timeout=600) as archive:
        uids = [s.study_uid for s in archive.studies()]
        for uid in uids:
            for _ in archive.series(uid):
                pass
            instances += sum(1 for _ in archive.instances(uid))
    return time.perf_counter() - start, instances


def build(url: str, port: int, workdir: Path) -> tuple[float, str]:
    config = workdir / "wfm.toml"
    config.write_text(f'database_url = "{url}"\nae_title = "BENCH"\nnetwork_timeout = 600\n\n[[remote_ae]]\n'
                      f'ae_title = "{AET}"\nhost = "127.0.0.1"\nport = {port}\n')
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workflow", "inventory", "build", AET, "--config", str(config)],
                          capture_output=True, text=True, cwd=workdir, env={**os.environ, "WFM_LOG_LEVEL": "WARNING"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"wfm inventory build failed:\n{done.stderr}")
    return seconds, done.stderr.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--series", type=int, default=2)
    parser.add_argument("--instances", type=int, default=10, help="per series")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--smoke", action="store_true", help="20 studies of 2 x 3, SQLite only")
    args = parser.parse_args()
    if args.smoke:
        args.studies, args.instances, args.backend = 20, 3, "sqlite"
    with tempfile.TemporaryDirectory(prefix="wfm-bench-inventory-") as tmp:
        work = Path(tmp)
        port = free_port()
        archive = subprocess.Popen([sys.executable, "-m", "refarchive", "--ae-title", AET, "--port", str(port),
                                    "--db", str(work / "archive.db"), "--seed-studies", str(args.studies),
                                    "--seed-series", str(args.series), "--seed-instances", str(args.instances)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, archive, timeout=600)
            base_seconds, instances = baseline(port)
            print(f"{'backend':<12} {'what':<34} {'seconds':>8} {'studies/s':>10} {'ratio':>6}")
            print(f"{'-':<12} {'bare Study Root crawl (baseline)':<34} {base_seconds:8.2f} "
                  f"{args.studies / base_seconds:10.1f} {1.0:6.2f}")
            backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
            for backend in backends:
                if backend == "sqlite":
                    url, drop = f"sqlite:///{work / 'wfm.db'}", None
                else:
                    created = postgres_database()
                    if created is None:
                        continue  # said on stderr
                    url, drop = created
                try:
                    seconds, said = build(url, port, work)
                finally:
                    if drop:
                        drop()
                name = "SQLite" if backend == "sqlite" else "PostgreSQL"
                print(f"{name:<12} {'wfm inventory build':<34} {seconds:8.2f} {args.studies / seconds:10.1f} "
                      f"{seconds / base_seconds:6.2f}   {said}")
            print(f"({args.studies} studies, {instances} instances)")
        finally:
            archive.terminate()
            archive.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
