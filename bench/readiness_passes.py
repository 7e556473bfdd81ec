#!/usr/bin/env python3
"""Readiness passes in process: does a pass cost what its changed instances cost, whatever the size of
the study? The services of one App (no network), the shipped default policy, a study whose COMPLETED
MPPS lists every instance and three INCOMPLETE workitems watching it; IANs of 10 instances go in one
after another, and the readiness worker's `run_pending` runs after every `--every` IANs (a pass of
`--every` x 10 changed instances). Prints the CPU of the passes in each tenth of the study and the
ratio of the last tenth to the first (flat: 1; the baseline is the same study's early passes), and the
passes' CPU per instance over the study. Only this process's CPU is counted (PostgreSQL's is not).

    python bench/readiness_passes.py                      # 100,000 instances, SQLite and PostgreSQL
    python bench/readiness_passes.py --instances 200000 --backend sqlite
    python bench/readiness_passes.py --uids serial        # UIDs as a modality numbers them
    python bench/readiness_passes.py --smoke              # tiny, to keep the script working
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from pydicom.uid import generate_uid

from ian_ingest import postgres_database
from readiness import PER_IAN, UID_KINDS, Study, _mpps, _workitem
from workflow import heap
from workflow.app import App
from workflow.config import Settings
from workflow.ian.ingest import Received
from workflow.ian.rules.notification import parse_ian
from workflow.store import migrate


def run(url: str, instances: int, every: int, uids: str) -> tuple[list[float], float]:
    """The passes' CPU seconds in each tenth of the study, and in all."""
    app = App(Settings(database_url=url, host="127.0.0.1", port=0, http_port=0))
    migrate.upgrade(app.engine)
    try:
        study = Study(instances, uids)
        create, done = _mpps(study)
        mpps = generate_uid()
        app.performed_steps.create(mpps, create.to_json_dict(), "CT1")
        app.performed_steps.set(mpps, done.to_json_dict())
        for _ in range(3):
            app.worklist.create(generate_uid(), _workitem(study.uid).to_json_dict())
        clock = datetime.now(timezone.utc) + timedelta(minutes=1)  # marks are due when passes run
        app.readiness.run_pending(clock)
        ians = [ds.to_json_dict() for ds in study.ian_datasets()]
        # The collector as `wfm serve` sets it, and the bench's own data (the study's IANs as JSON: about
        # a million objects the server never holds) out of its sight: with CPython's defaults a full
        # collection walking them landed in one pass of each run and cost it ~1 s.
        heap.settle()
        tenths = [0.0] * 10
        for n, ds in enumerate(ians, 1):
            app.ingest.ingest(Received(generate_uid(), "ARCHIVE", "127.0.0.1:1", clock, ds), parse_ian(ds, 1000))
            if n % every == 0 or n == len(ians):
                clock += timedelta(minutes=1)
                start = time.process_time()
                app.readiness.run_pending(clock)
                tenths[min(9, (n - 1) * 10 // len(ians))] += time.process_time() - start
        return tenths, sum(tenths)
    finally:
        app.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=100, help="IANs between passes")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--uids", choices=UID_KINDS, default="random",
                        help="random or serial UIDs (see bench/readiness.py)")
    args = parser.parse_args()
    if args.smoke:
        args.instances, args.every = 2_000, 20
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    print(f"{'backend':<11} {'instances':>9} {'first tenth ms/inst':>19} {'last tenth ms/inst':>18} "
          f"{'last/first':>10} {'all ms/inst':>11}")
    for backend in backends:
        if backend == "sqlite":
            folder = tempfile.mkdtemp(prefix="wfm-bench-")
            url, drop = f"sqlite:///{folder}/wfm.db", lambda: shutil.rmtree(folder, ignore_errors=True)
        elif (made := postgres_database()) is None:
            continue
        else:
            url, drop = made
        try:
            tenths, total = run(url, args.instances, args.every, args.uids)
        finally:
            drop()
        per_tenth = args.instances / 10
        first, last = tenths[0] / per_tenth * 1000, tenths[-1] / per_tenth * 1000
        print(f"{'SQLite' if backend == 'sqlite' else 'PostgreSQL':<11} {args.instances:>9} {first:>19.4f} "
              f"{last:>18.4f} {last / first if first else float('nan'):>10.2f} "
              f"{total / args.instances * 1000:>11.4f}")
        print(f"{'':<11} by tenth, ms/inst: " + " ".join(f"{t / per_tenth * 1000:.3f}" for t in tenths))
    print(f"passes every {args.every} IANs of {PER_IAN} instances, {args.uids} UIDs; flat: last/first 1")


if __name__ == "__main__":
    sys.exit(main())
