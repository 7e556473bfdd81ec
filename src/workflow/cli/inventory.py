"""`wfm inventory build|list`: Inventories (DICOM Sup 223) for archives that cannot make one, served by
this server's Inventory Q/R SCP.

`build` returns when the inventory is stored: it prints the root's SOP Instance UID last and exits 0;
1 when the archive stopped answering (what was listed is kept: the same command resumes the crawl).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys


def cmd_build(args, settings, engine) -> int:
    from workflow.inventory.job import RECORD_LIMIT, Archive, CrawlStopped, build

    if args.record_limit is not None and args.record_limit < 1:
        print("wfm inventory: --record-limit must be at least 1", file=sys.stderr)
        return 2
    remote = settings.remote(args.archive)
    if remote is None:
        print(f"wfm inventory: no [[remote_ae]] named {args.archive!r} in the configuration", file=sys.stderr)
        return 2
    reconcile = remote.reconcile
    days = args.days if args.days is not None else (reconcile.days if reconcile else None)
    modalities = tuple(args.modality) if args.modality else (reconcile.modalities if reconcile else ())

    def progress(message: str) -> None:
        print(f"wfm inventory: {message}", file=sys.stderr)

    try:
        archive = Archive(remote.ae_title, remote.host, remote.port, reconcile.retrieve_ae_title if reconcile else "")
        built, _ = build(settings, engine, archive, days=days,
                         modalities=modalities, record_limit=args.record_limit or RECORD_LIMIT,
                         progress=progress)
    except CrawlStopped as exc:
        print(f"wfm inventory: {exc}; what was listed is kept: run the same command again to resume",
              file=sys.stderr)
        return 1
    print(f"{built.completion}: {built.records} study records in {built.nodes} Inventory instance(s)"
          + ("" if built.completion == "COMPLETE" else f" ({built.description})"), file=sys.stderr)
    print(built.root_uid)
    return 0


def cmd_list(args, settings, engine) -> int:
    from workflow.inventory import store

    found = store.roots(engine, args.archive)
    if args.json:
        print(json.dumps([{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()
                           if k != "scope_json"} for r in found], indent=2))
        return 0
    if not found:
        print("no inventories yet: `wfm inventory build ARCHIVE` makes one", file=sys.stderr)
    for r in found:
        print(f"{r['sop_instance_uid']}  {r['archive_ae_title']:<16} {r['content_date']} {r['content_time']}  "
              f"{r['completion']:<8} {r['total_records']} study records")
    return 0


def add_parsers(sub, common: argparse.ArgumentParser, *, writes, reads) -> None:
    p = sub.add_parser("inventory", help="Inventories for archives that cannot make one (served over Inventory Q/R)")
    isub = p.add_subparsers(dest="inventory_command", required=True)
    p = isub.add_parser("build", parents=[common],
                        help="list a configured archive by Study Root C-FIND and store its Inventory; "
                             "prints the root UID last")
    p.add_argument("archive", help="a configured [[remote_ae]] title")
    p.add_argument("--days", type=int, help="only studies of the last N days (default: the archive's "
                                            "[remote_ae.reconcile] days, else all)")
    p.add_argument("--modality", "--modalities", action="extend", nargs="+", dest="modality", metavar="MODALITY",
                   help="only studies with these modalities (default: the archive's reconcile modalities)")
    p.add_argument("--record-limit", type=int,
                   help="study records per Inventory instance (default 1000); more are split into incorporated "
                        "instances")
    p.set_defaults(func=writes(cmd_build))
    p = isub.add_parser("list", parents=[common], help="the inventories kept, newest first")
    p.add_argument("archive", nargs="?", help="only this archive's")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=reads(cmd_list))
