"""The `wfm` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from workflow import __version__
from workflow.cli.reconcile import add_parsers as add_reconcile_parsers
from workflow.config import ConfigError, Settings, load_settings
from workflow.logs import setup_logging


def _settings(args) -> Settings:
    return load_settings(args.config)


def cmd_serve(args) -> int:
    from workflow.app import App

    settings = _settings(args)
    setup_logging(settings.log_level)
    return App(settings).run_until_signalled()


def cmd_config_show(args) -> int:
    settings = _settings(args)
    data = settings.masked()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"# effective settings (from {settings.source} and WFM_* environment variables)")
    for key, value in data.items():
        if key != "remote_ae":
            print(f"{key} = {json.dumps(value)}")
    for remote in data["remote_ae"]:
        print(f"\n[[remote_ae]]\nae_title = {json.dumps(remote['ae_title'])}\n"
              f"host = {json.dumps(remote['host'])}\nport = {remote['port']}")
    return 0


def cmd_db(args) -> int:
    from workflow.store import migrate
    from workflow.store.engine import make_engine

    engine = make_engine(_settings(args).database_url)
    if args.db_command == "upgrade":
        migrate.upgrade(engine)
    current = migrate.current_revision(engine)
    head = migrate.head_revision(engine)
    state = "up to date" if current == head else f"head is {head}: run 'wfm db upgrade'"
    print(f"{current or 'empty (no schema)'} ({state})")
    return 0


def cmd_study(args) -> int:
    from workflow.overview.study import study_report
    from workflow.store.engine import make_engine

    report = study_report(make_engine(_settings(args).database_url), args.study_uid)
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
    _table(rows)
    print()
    rows = [("RECEIVED", "FROM", "IAN SOP INSTANCE", "INSTANCES")]
    for n in report["notifications"]:
        rows.append((n["received_at"], n["calling_ae_title"], n["sop_instance_uid"], str(n["instance_count"])))
    _table(rows)
    for title, key, columns in (("REQUESTED PROCEDURES", "requested_procedures",
                                 ("accession_number", "requested_procedure_id", "state")),
                                ("PERFORMED STEPS", "performed_steps", ("sop_instance_uid", "status", "accession_number")),
                                ("WORKITEMS", "workitems", ("sop_instance_uid", "procedure_step_state",
                                                            "input_readiness_state"))):
        if report[key]:
            print()
            _table([tuple(c.upper().replace("_", " ") for c in columns)]
                   + [tuple(str(entry[c] or "-") for c in columns) for entry in report[key]])
    return 0


def cmd_explain(args) -> int:
    from workflow.readiness.rules.policy import load_policies
    from workflow.ups.outbox import utcnow
    from workflow.readiness.service import ReadinessService
    from workflow.store.resources import policies_location

    settings = _settings(args)
    service = ReadinessService(_engine(args), load_policies(policies_location(settings.policies)), None)
    why = service.explain(args.uid, utcnow())
    if why is None:
        print(f"unknown workitem: {args.uid}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(why, indent=2))
        return 0
    print(f"Workitem {why['workitem_uid']}: {why['procedure_step_state']}, Input Readiness "
          f"{why['input_readiness_state'] or '-'}")
    if "reason" in why:
        print(why["reason"])
        return 0
    print(f"Policy: {why['policy']} (evaluates to {why['evaluated_readiness']} now)")
    expected = why["expected"]
    print("Expected set: " + ("none known (no COMPLETED MPPS)" if expected is None else f"{len(expected)} instances"))
    print(f"Available as inputs: {len(why['available'])}; missing: {len(why['missing'])}"
          + (f" ({len(why['not_available'])} announced but not available)" if why["not_available"] else ""))
    for uid in why["missing"][:20]:
        print(f"  missing {uid}")
    for reason in why["reasons"]:
        print(f"- {reason}")
    if why["settle_timer_due_at"]:
        print(f"Settle timer due at {why['settle_timer_due_at']}")
    if why.get("note"):
        print(why["note"])
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_ian_send(args) -> int:
    from workflow.ian.dimse.scu import AssociationFailed, build_ians, scan, send_ians

    ians = build_ians(scan(args.paths), args.availability, args.retrieve_ae, args.retrieve_url, args.pps_uid)
    if not ians:
        print("no DICOM instances found in the given paths", file=sys.stderr)
        return 1
    try:
        results = send_ians(ians, args.host, args.port, args.aec, args.aet, args.timeout)
    except (AssociationFailed, OSError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 2
    for r in results:
        status = "no response" if r.status is None else f"0x{r.status:04X}"
        comment = f" ({r.error_comment})" if r.error_comment else ""
        print(f"study {r.study_instance_uid}: {r.instances} instances, IAN {r.sop_instance_uid}: "
              f"status {status}{comment}")
    return 0 if all(r.ok for r in results) else 3


def _engine(args):
    from workflow.store.engine import make_engine
    return make_engine(_settings(args).database_url)


def _with_store(func):
    """A command that needs the settings and a migrated database."""
    def run(args) -> int:
        from workflow.store import migrate
        settings = _settings(args)
        engine = _engine(args)
        migrate.upgrade(engine)
        try:
            return func(args, settings, engine)
        finally:
            engine.dispose()
    return run


def cmd_ups_list(args) -> int:
    from workflow.ups.listing import list_workitems

    rows = list_workitems(_engine(args), args.state, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("SOP INSTANCE UID", "STATE", "READINESS", "PRIORITY", "START", "WORKLIST", "LABEL")]
    table += [(r["sop_instance_uid"], r["procedure_step_state"], r["input_readiness_state"] or "-",
               r["priority"] or "-", r["scheduled_start_datetime"] or "-", r["worklist_label"] or "-",
               r["procedure_step_label"] or "-") for r in rows]
    _table(table)
    return 0


def cmd_ups_show(args) -> int:
    from workflow.ups.listing import show_workitem

    ds = show_workitem(_engine(args), args.uid)
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

    rows = Outbox(_engine(args), _settings(args)).listing(include_delivered=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("ID", "WORKITEM", "EVENT", "SUBSCRIBER", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")]
    table += [(str(r["id"]), r["workitem_uid"], str(r["event_type_id"]), r["subscriber"], r["status"],
               str(r["attempts"]), r["next_attempt_at"] or "-", (r["last_error"] or "-")[:60]) for r in rows]
    _table(table)
    return 0


def cmd_policies_check(args) -> int:
    from workflow.readiness.rules.policy import PolicyError, load_policies
    from workflow.store.resources import policies_location

    if len(args.paths) == 1:
        paths = Path(args.paths[0])  # a folder or one file
    else:
        paths = [Path(p) for p in args.paths] or policies_location(_settings(args).policies)
    try:
        policy_set = load_policies(paths)
    except PolicyError as exc:
        for problem in exc.problems or [exc]:
            print(f"{problem.file}: {problem.key or '(file)'}: {problem.reason}", file=sys.stderr)
        return 2
    print(f"ok: {len(policy_set.policies)} policies, {len(policy_set.templates)} templates "
          f"({', '.join(str(s) for s in policy_set.sources)})")
    return 0


def cmd_conformance(args) -> int:
    from workflow.conformance import render

    text = render(_settings(args) if args.config or os.environ.get("WFM_CONFIG") else None)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML settings file (default: $WFM_CONFIG)")
    parser = argparse.ArgumentParser(prog="wfm", description="The open DICOM workflow manager.",
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"wfm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the DICOM server until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help="settings")
    csub = p.add_subparsers(dest="config_command", required=True)
    p = csub.add_parser("show", parents=[common], help="print the effective settings (secrets masked)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config_show)

    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "upgrade the schema to the newest revision"),
                       ("current", "print the schema revision")):
        dsub.add_parser(name, parents=[common], help=text).set_defaults(func=cmd_db)

    p = sub.add_parser("study", parents=[common], help="what the server knows about a study")
    p.add_argument("study_uid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("explain", parents=[common], help="why a workitem is or is not READY")
    p.add_argument("uid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("ian", help="Instance Availability Notification tools")
    isub = p.add_subparsers(dest="ian_command", required=True)
    p = isub.add_parser("send", parents=[common], help="send IANs for DICOM files to any IAN SCP")
    p.add_argument("paths", nargs="+", help="DICOM files or folders (searched recursively)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11112)
    p.add_argument("--aec", default="WFM", help="called AE title (the IAN SCP)")
    p.add_argument("--aet", default="WFMSCU", help="our calling AE title")
    p.add_argument("--availability", default="ONLINE", choices=["ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE"])
    p.add_argument("--retrieve-ae", action="append", required=True,
                   help="Retrieve AE Title where the instances are (repeat for several)")
    p.add_argument("--retrieve-url", help="Retrieve URL template with {study}, {series}, {instance}")
    p.add_argument("--pps-uid", help="SOP Instance UID of the MPPS to reference")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_ian_send)

    p = sub.add_parser("ups", help="the UPS worklist")
    usub = p.add_subparsers(dest="ups_command", required=True)
    p = usub.add_parser("list", parents=[common], help="workitems, most recently scheduled first")
    p.add_argument("--state", choices=["SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"])
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ups_list)
    p = usub.add_parser("show", parents=[common], help="one workitem as DICOM JSON (or a dump)")
    p.add_argument("uid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ups_show)

    p = sub.add_parser("events", parents=[common], help="UPS event reports owed to subscribers")
    p.add_argument("--pending", action="store_true", help="only events not yet delivered (the default)")
    p.add_argument("--all", action="store_true", help="delivered events too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("policies", help="readiness policies")
    psub = p.add_subparsers(dest="policies_command", required=True)
    p = psub.add_parser("check", parents=[common], help="validate policy files (file, key and reason)")
    p.add_argument("paths", nargs="*", help="policy files or a folder (default: the configured policies)")
    p.set_defaults(func=cmd_policies_check)

    add_reconcile_parsers(sub, common, _with_store)

    p = sub.add_parser("conformance", parents=[common], help="print the DICOM Conformance Statement generated from the code")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_conformance)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        setup_logging("WARNING")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"wfm: configuration error: {exc}", file=sys.stderr)
        return 2
