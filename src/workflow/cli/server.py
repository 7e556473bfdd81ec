"""`wfm serve`, `wfm config show`, `wfm db`, `wfm conformance`: running and inspecting the server."""

from __future__ import annotations

from workflow.logs import setup_logging
import json
import os
import sys
from pathlib import Path

from workflow.cli.common import CliError, engine_of, settings_of


def cmd_serve(args) -> int:
    from workflow.app import App

    from workflow.app import StartupError

    settings = settings_of(args)
    setup_logging(settings.log_level)
    try:
        return App(settings).run_until_signalled()
    except StartupError as exc:
        raise CliError(str(exc)) from None


def cmd_config_show(args) -> int:
    settings = settings_of(args)
    data = settings.masked()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"# effective settings (from {settings.source} and WFM_* environment variables)")
    for key, value in data.items():
        if key not in ("remote_ae", "client_ae"):
            print(f"{key} = {json.dumps(value)}")
    for client in data["client_ae"]:
        print(f"\n[[client_ae]]\nae_title = {json.dumps(client['ae_title'])}\nrights = {json.dumps(client['rights'])}"
              + (f"\nhosts = {json.dumps(client['hosts'])}" if client["hosts"] else "")
              + (f"\ncertificate_subject = {json.dumps(client['certificate_subject'])}"
                 if client["certificate_subject"] else ""))
    for remote in data["remote_ae"]:
        print(f"\n[[remote_ae]]\nae_title = {json.dumps(remote['ae_title'])}\n"
              f"host = {json.dumps(remote['host'])}\nport = {remote['port']}")
    return 0


def cmd_db(args) -> int:
    from workflow.store import migrate
    from workflow.store.engine import make_engine

    if args.db_command == "current":
        engine = engine_of(args, allow_old_schema=True)
    else:
        engine = make_engine(settings_of(args).database_url)
        migrate.upgrade(engine)
    current = migrate.current_revision(engine)
    head = migrate.head_revision(engine)
    engine.dispose()
    state = "up to date" if current == head else f"head is {head}: run 'wfm db upgrade'"
    print(f"{current or 'empty (no schema)'} ({state})")
    return 0


def cmd_db_check(args) -> int:
    from workflow.cli.db_check import cmd_db_check as check

    return check(args)


def cmd_conformance(args) -> int:
    from workflow.conformance import render

    text = render(settings_of(args) if args.config or os.environ.get("WFM_CONFIG") else None)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def add_parsers(sub, common) -> None:
    p = sub.add_parser("serve", parents=[common], help="run the DICOM server until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help="settings")
    csub = p.add_subparsers(dest="config_command", required=True)
    p = csub.add_parser("show", parents=[common], help="print the effective settings (secrets masked)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_config_show)

    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "upgrade the schema to the newest revision"),
                       ("current", "print the schema revision")):
        dsub.add_parser(name, parents=[common], help=text).set_defaults(func=cmd_db)
    p = dsub.add_parser("check", parents=[common],
                        help="list stored workitems, IANs and MPPS that today's checks would refuse "
                             "(exit status 1 when there are some)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_db_check)

    p = sub.add_parser("conformance", parents=[common],
                       help="print the DICOM Conformance Statement generated from the code")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_conformance)
