"""The `wfm` command: one module per group of subcommands, each adding its own parsers."""

from __future__ import annotations

import argparse
import os
import sys

from workflow import __version__
from workflow.cli import audit, demo, ian, inventory, mpps, policies, reconcile, server, study, tokens, ups
from workflow.cli.common import CliError, with_read_store, with_store
from workflow.config import ConfigError
from workflow.logs import setup_logging


class HelpWithDefaults(argparse.HelpFormatter):
    """Each option's help ends with its default, when it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.option_strings and "%(default)" not in text and default not in (None, False, argparse.SUPPRESS, []):
            text += " (default: %(default)s)"
        return text


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subparsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wfm", description="The open DICOM workflow manager.")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default: $WFM_CONFIG)")
    # Every subcommand takes --config too (`wfm serve --config FILE`); SUPPRESS keeps a value given
    # before the subcommand (`wfm --config FILE serve`) instead of overwriting it with None.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="TOML settings file (default: $WFM_CONFIG)")
    parser.add_argument("--version", action="version", version=f"wfm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (server, study, policies, ian, ups, mpps, tokens, audit, demo):
        module.add_parsers(sub, common)
    reconcile.add_parsers(sub, common, writes=with_store, reads=with_read_store)
    inventory.add_parsers(sub, common, writes=with_store, reads=with_read_store)
    for each in (parser, *_subparsers(parser)):
        each.formatter_class = HelpWithDefaults
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        setup_logging("WARNING", tool=True)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return status
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"wfm: configuration error: {problem}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"wfm: {exc}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:
        # The reader went away (`wfm ups list | head`): nothing more to say, and nothing to complain
        # about; stdout is pointed at /dev/null so the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
