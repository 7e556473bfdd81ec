"""`wfm study`: what the server knows about a study."""

from __future__ import annotations

import json
import sys

from workflow.cli.common import engine_of, print_table


def cmd_study(args) -> int:
    from workflow.overview.study import study_report

    report = study_report(engine_of(args), args.study_uid)
    if report is None:
        print(f"unknown study: no IAN has named {args.study_uid}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Study {report['study_instance_uid']}: {len(report['instances'])} instances, "
          f"{len(report['notifications'])} notifications")
    rows = [("SERIES", "SOP INSTANCE", "AVAILABILITY", "RETRIEVE AE TITLES")]
    for inst in report["instances"]:
        rows.append((inst["series_instance_uid"], inst["sop_instance_uid"], inst["availability"] or "-",
                     ",".join(inst["retrieve_ae_titles"]) or "-"))
    print_table(rows)
    print()
    rows = [("RECEIVED", "FROM", "IAN SOP INSTANCE", "INSTANCES")]
    for n in report["notifications"]:
        rows.append((n["received_at"], n["calling_ae_title"], n["sop_instance_uid"], str(n["instance_count"])))
    print_table(rows)
    for title, key, columns in (("REQUESTED PROCEDURES", "requested_procedures",
                                 ("accession_number", "requested_procedure_id", "state")),
                                ("PERFORMED STEPS", "performed_steps", ("sop_instance_uid", "status", "accession_number")),
                                ("WORKITEMS", "workitems", ("sop_instance_uid", "procedure_step_state",
                                                            "input_readiness_state"))):
        if report[key]:
            print()
            print_table([tuple(c.upper().replace("_", " ") for c in columns)]
                   + [tuple(str(entry[c] or "-") for c in columns) for entry in report[key]])
    return 0


def add_parsers(sub, common) -> None:
    p = sub.add_parser("study", parents=[common], help="what the server knows about a study")
    p.add_argument("study_uid", help="the Study Instance UID")
    p.add_argument("--json", action="store_true", help="as JSON (what the read API returns)")
    p.set_defaults(func=cmd_study)
