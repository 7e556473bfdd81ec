"""`wfm audit`: the audit records owed to the audit repository (or all), oldest first."""

from __future__ import annotations

import json
import sys

from workflow.cli.common import print_table, with_read_store


def cmd_audit(args, settings, engine) -> int:
    from workflow.audit.trail import AuditTrail

    rows = AuditTrail(engine, settings).listing(include_sent=args.all, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not settings.audit_repository:
        print("no audit_repository is configured: nothing is recorded", file=sys.stderr)
    if not rows:
        print("nothing owed to the audit repository" if not args.all else "no audit records", file=sys.stderr)
        return 0
    print_table([("ID", "CREATED", "EVENT", "STATUS", "ATTEMPTS", "LAST ERROR")] +
                [(str(r["id"]), r["created_at"], r["event"], r["status"], str(r["attempts"]),
                  (r["last_error"] or "-")[:60]) for r in rows])
    return 0


def add_parsers(sub, common) -> None:
    p = sub.add_parser("audit", parents=[common], help="ATNA audit records owed to the audit repository")
    p.add_argument("--pending", action="store_true", help="only records not yet sent (the default)")
    p.add_argument("--all", action="store_true", help="sent records too")
    p.add_argument("--limit", type=int, default=1000, help="at most this many")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=with_read_store(cmd_audit))
