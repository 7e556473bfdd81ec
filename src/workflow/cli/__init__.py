"""The `wfm` command: one module per group of subcommands, each adding its own parsers."""

from __future__ import annotations

import argparse
import sys

from workflow import __version__
from workflow.cli import demo, ian, mpps, policies, reconcile, server, study, ups
from workflow.cli.common import with_store
from workflow.config import ConfigError
from workflow.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML settings file (default: $WFM_CONFIG)")
    parser = argparse.ArgumentParser(prog="wfm", description="The open DICOM workflow manager.",
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"wfm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (server, study, policies, ian, ups, mpps, demo):
        module.add_parsers(sub, common)
    reconcile.add_parsers(sub, common, with_store)
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
