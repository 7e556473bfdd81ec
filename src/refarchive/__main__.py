"""python -m refarchive: run the reference archive until SIGINT or SIGTERM (for demos).

    python -m refarchive --ae-title REFARCH --port 11112 --db /tmp/refarch.db \\
        --seed-studies 100 --seed-series 2 --seed-instances 10 --build-inventory INSTANCE
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from refarchive.archive import ReferenceArchive


def _destination(text: str) -> tuple[str, tuple[str, int]]:
    try:
        ae, address = text.split("=", 1)
        host, port = address.rsplit(":", 1)
        return ae, (host, int(port))
    except ValueError:
        raise argparse.ArgumentTypeError("expected AE=host:port") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refarchive", description=__doc__.splitlines()[0])
    parser.add_argument("--ae-title", default="REFARCH")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11112)
    parser.add_argument("--db", help="SQLite file (default: a temporary one, deleted on exit)")
    parser.add_argument("--seed-studies", type=int, default=0, help="seed this many studies if the db has none")
    parser.add_argument("--seed-series", type=int, default=1, help="series per seeded study")
    parser.add_argument("--seed-instances", type=int, default=1, help="instances per seeded series")
    parser.add_argument("--record-limit", type=int, default=1000, help="study records per Inventory instance")
    parser.add_argument("--build-inventory", choices=("STUDY", "SERIES", "INSTANCE"),
                        help="produce an inventory of the holdings at start")
    parser.add_argument("--move-dest", type=_destination, action="append", default=[], metavar="AE=HOST:PORT",
                        help="a C-MOVE destination (repeatable)")
    parser.add_argument("--no-repository-query", dest="repository_query", action="store_false",
                        help="do not offer the Repository Query SOP Class")
    parser.add_argument("--repository-page-limit", type=int, default=10_000,
                        help="matches per Repository Query transaction before B001")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pynetdicom", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("refarchive")

    archive = ReferenceArchive(args.ae_title, args.port, host=args.host, db_path=args.db,
                               record_limit=args.record_limit, move_destinations=dict(args.move_dest),
                               repository_query=args.repository_query,
                               repository_page_limit=args.repository_page_limit)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if args.seed_studies and archive.holdings.study_count() == 0:
            t0 = time.monotonic()
            seeded = archive.holdings.seed(args.seed_studies, args.seed_series, args.seed_instances)
            log.info("seeded %d instances in %.1f s (study UIDs %s..%s)", seeded.instance_count,
                     time.monotonic() - t0, seeded.study_uid(0), seeded.study_uid(seeded.studies - 1))
        if args.build_inventory:
            built = archive.build_inventory(args.build_inventory)
            log.info("inventory %s: %d study records in %d instances, %.1f s", built.root_uid, built.total_records,
                     len(built.instance_uids), built.seconds)
        archive.start()
        stop.wait()
    finally:
        archive.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
