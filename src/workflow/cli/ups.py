"""`wfm ups list|show` and `wfm events`: the worklist and the event reports it owes."""

from __future__ import annotations

import json
import sys

from workflow.cli.common import settings_of, engine_of, print_table


def cmd_ups_list(args) -> int:
    from workflow.ups.listing import list_workitems

    rows = list_workitems(engine_of(args), args.state, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("SOP INSTANCE UID", "STATE", "READINESS", "PRIORITY", "START", "WORKLIST", "LABEL")]
    table += [(r["sop_instance_uid"], r["procedure_step_state"], r["input_readiness_state"] or "-",
               r["priority"] or "-", r["scheduled_start_datetime"] or "-", r["worklist_label"] or "-",
               r["procedure_step_label"] or "-") for r in rows]
    print_table(table)
    return 0


def cmd_ups_show(args) -> int:
    from workflow.ups.listing import show_workitem

    ds = show_workitem(engine_of(args), args.uid)
    if ds is None:
        print(f"unknown workitem: {args.uid}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(ds, indent=2))
        return 0
    from pydicom.dataset import Dataset
    print(Dataset.from_json(ds))
    return 0


def cmd_events(args) -> int:
    from workflow.ups.outbox import Outbox

    rows = Outbox(engine_of(args), settings_of(args)).listing(include_delivered=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("ID", "WORKITEM", "EVENT", "SUBSCRIBER", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")]
    table += [(str(r["id"]), r["workitem_uid"], str(r["event_type_id"]), r["subscriber"], r["status"],
               str(r["attempts"]), r["next_attempt_at"] or "-", (r["last_error"] or "-")[:60]) for r in rows]
    print_table(table)
    return 0


def add_parsers(sub, common) -> None:
    p = sub.add_parser("ups", help="the UPS worklist")
    usub = p.add_subparsers(dest="ups_command", required=True)
    p = usub.add_parser("list", parents=[common], help="workitems, most recently scheduled first")
    p.add_argument("--state", choices=["SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"],
                   help="only workitems in this state")
    p.add_argument("--limit", type=int, default=1000, help="at most this many")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_ups_list)
    p = usub.add_parser("show", parents=[common], help="one workitem as DICOM JSON (or a dump)")
    p.add_argument("uid", help="the workitem's SOP Instance UID")
    p.add_argument("--json", action="store_true", help="as DICOM JSON")
    p.set_defaults(func=cmd_ups_show)

    p = sub.add_parser("events", parents=[common], help="UPS event reports owed to subscribers")
    p.add_argument("--pending", action="store_true", help="only events not yet delivered (the default)")
    p.add_argument("--all", action="store_true", help="delivered events too")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_events)
