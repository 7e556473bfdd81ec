"""`wfm reconcile run|schedule` and `wfm report list|show|verify`: reconciliation runs and their reports.

Progress goes to stderr, results to stdout; `reconcile run` ends with the run UID on its own line and
exits 0 when the run completed, whatever it found, 1 when it failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path



def cmd_reconcile_run(args, settings, engine) -> int:
    from workflow.readiness.service import PendingMarks
    from workflow.reconcile import job as reconcile_job
    from workflow.reconcile.reports import RunEnded, RunInProgress

    target = _target(args, settings)
    if target is None:
        return 2
    try:
        result = reconcile_job.run(settings, engine, target, study_uids=tuple(args.study or ()),
                                   progress=_progress(sys.stderr), studies=PendingMarks())
    except (RunInProgress, RunEnded) as exc:  # RunEnded: ended as abandoned elsewhere while it ran
        print(f"wfm reconcile: {exc}", file=sys.stderr)
        return 1
    if sys.stderr.isatty():
        print(file=sys.stderr)  # end the status line
    by_reason = {k: v for k, v in result.counts["by_reason"].items() if v}
    print(f"{result.status}: {json.dumps(by_reason) if by_reason else 'no discrepancies'}"
          + (f" ({result.error})" if result.error else ""), file=sys.stderr)
    print(result.run_uid)
    return 0 if result.status == "COMPLETED" else 1


def _progress(out):
    """Progress on stderr: one status line rewritten in place on a terminal (with the seconds since
    the start), one line per step otherwise (logs, cron mail)."""
    import time
    started = time.monotonic()

    def show(message: str) -> None:
        text = f"wfm reconcile [{time.monotonic() - started:6.1f} s] {message}"
        if out.isatty():
            out.write("\r\033[K" + text[:150])
            out.flush()
        else:
            print(text, file=out)
    return show


def _target(args, settings):
    """The configured archive with the command line's options over its [remote_ae.reconcile] settings."""
    from workflow.config import Reconcile
    from workflow.reconcile.job import Target

    if args.archive:
        remote = settings.remote(args.archive)
        if remote is None:
            print(f"wfm reconcile: no [[remote_ae]] named {args.archive!r} in the configuration", file=sys.stderr)
            return None
        target = Target.of(remote)
    elif args.ae and args.host and args.port:
        target = Target(args.ae, args.host, args.port, Reconcile())
    else:
        print("wfm reconcile: name a configured ARCHIVE, or give --ae, --host and --port", file=sys.stderr)
        return None
    return target.with_options(method=args.method, retrieve=args.retrieve, retrieve_ae_title=args.retrieve_ae,
                               days=args.days, modalities=tuple(args.modality) if args.modality else None,
                               count_shortcut=args.count_shortcut or None,
                               repository_query=False if args.study_root_only else None)


def cmd_report_list(args, settings, engine) -> int:
    from workflow.reconcile.reports import list_runs

    runs = list_runs(engine, args.limit)
    if not runs:
        print("no reconciliation runs yet: `wfm reconcile run ARCHIVE` starts one (see `wfm reconcile run --help`)",
              file=sys.stderr)
    for r in runs:
        print(f"{r['run_uid']}  {r['archive']:<16} {r['method']:<9} {r['status']:<9} "
              f"{r['started_at'][:19]}  {r['findings']} discrepancies")
    return 0


def cmd_report_show(args, settings, engine) -> int:
    from workflow.reconcile import reports

    run_id = reports.run_id(engine, args.run_uid)
    if run_id is None:
        print(f"wfm report: no run {args.run_uid}", file=sys.stderr)
        return 1
    _audit_read(settings, engine, args.run_uid, args.format if args.output else None)
    if args.format == "json":
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        reports.render_json(engine, run_id, out)
    else:
        out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
        (reports.render_csv if args.format == "csv" else reports.render_html)(engine, run_id, out)
    if args.output:
        out.close()
        print(f"wrote {Path(args.output)}", file=sys.stderr)
    return 0


def cmd_report_verify(args, settings, engine) -> int:
    from workflow.reconcile import reports

    run_id = reports.run_id(engine, args.run_uid)
    if run_id is None:
        print(f"wfm report: no run {args.run_uid}", file=sys.stderr)
        return 1
    result = reports.verify(engine, run_id)
    _audit_read(settings, engine, args.run_uid, None)
    if result.ok:
        print(f"OK: the report of {args.run_uid} is as recorded (SHA-256 {result.recorded})")
        return 0
    print(f"CHANGED: the report of {args.run_uid} differs from what was recorded: recorded {result.recorded}, "
          f"now {result.computed}; {'; '.join(result.problems)}")
    return 1


def _audit_read(settings, engine, run_uid: str, exported: str | None) -> None:
    """A report shown or verified (DICOM Instances Accessed), or written to a file (Export), by the
    operating-system user running the command."""
    import getpass

    from workflow.audit.rules import messages
    from workflow.audit.trail import AuditTrail
    from workflow.kernel.requestor import Requestor

    who = Requestor(getpass.getuser()[:16], "localhost", "local")
    AuditTrail(engine, settings).record_now(messages.report_read(who, run_uid, exported))


def add_parsers(sub, common: argparse.ArgumentParser, *, writes, reads) -> None:
    """`writes(func)` / `reads(func)` give the argparse handler: settings and the engine (a migrated
    database; for `reads` one that exists already), then func."""
    p = sub.add_parser("reconcile", help="inventory reconciliation against an archive")
    rsub = p.add_subparsers(dest="reconcile_command", required=True)
    p = rsub.add_parser("run", parents=[common], help="reconcile one archive now; prints the run UID last")
    p.add_argument("archive", nargs="?", help="a configured [[remote_ae]] title")
    p.add_argument("--ae", help="the archive's AE title (a one-off run)")
    p.add_argument("--host", help="the archive's address (a one-off run)")
    p.add_argument("--port", type=int, help="the archive's port (a one-off run)")
    p.add_argument("--method", choices=("query", "inventory", "auto"),
                   help="how to list the archive's holdings (default: the configured method, else auto)")
    p.add_argument("--retrieve", choices=("get", "move"), help="Inventory instances by C-GET or C-MOVE")
    p.add_argument("--retrieve-ae", help="the Retrieve AE Title IANs name for this archive (default: --ae)")
    p.add_argument("--days", type=int, help="only studies of the last N days")
    p.add_argument("--modality", action="append", help="only studies with this modality (repeatable)")
    p.add_argument("--study", action="append", help="only this Study Instance UID (repeatable)")
    p.add_argument("--count-shortcut", action="store_true",
                   help="skip the instance query of a study whose instance count agrees (opt-in)")
    p.add_argument("--no-repository-query", dest="study_root_only", action="store_true",
                   help="query path: Study Root C-FIND even where the archive offers Repository Query")
    p.set_defaults(func=writes(cmd_reconcile_run))
    p = rsub.add_parser("schedule", parents=[common],
                        help="each configured archive: method, schedule, scope, next run and last run")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=reads(_schedule))

    p = sub.add_parser("report", help="reconciliation reports")
    rsub = p.add_subparsers(dest="report_command", required=True)
    p = rsub.add_parser("list", parents=[common], help="runs, most recent first")
    p.add_argument("--limit", type=int, default=50, help="at most this many runs")
    p.set_defaults(func=reads(cmd_report_list))
    p = rsub.add_parser("show", parents=[common], help="one run's report")
    p.add_argument("run_uid", help="the run's UID (`wfm report list`)")
    p.add_argument("--format", choices=("json", "csv", "html"), default="json", help="report format")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=reads(cmd_report_show))
    p = rsub.add_parser("verify", parents=[common], help="check a report against its recorded SHA-256")
    p.add_argument("run_uid", help="the run's UID (`wfm report list`)")
    p.set_defaults(func=reads(cmd_report_verify))


def _schedule(args, settings, engine) -> int:
    from workflow.cli.schedule import cmd_reconcile_schedule
    return cmd_reconcile_schedule(args, settings, engine)
