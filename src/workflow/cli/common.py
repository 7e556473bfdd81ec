"""What every `wfm` command shares: settings, the database engine, plain-text tables, and the options
and outcome of the SCU tools."""

from __future__ import annotations

import argparse
import sys

from workflow.config import Settings, load_settings


def settings_of(args) -> Settings:
    return load_settings(args.config)


def engine_of(args):
    from workflow.store.engine import make_engine
    return make_engine(settings_of(args).database_url)


def with_store(func):
    """A command that needs the settings and a migrated database."""
    def run(args) -> int:
        from workflow.store import migrate
        settings = settings_of(args)
        engine = engine_of(args)
        migrate.upgrade(engine)
        try:
            return func(args, settings, engine)
        finally:
            engine.dispose()
    return run


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def add_peer_arguments(p, called_ae: str = "WFM", what: str = "SCP") -> None:
    """--host, --port, --aec, --aet and --timeout: the peer an SCU tool calls (help shows defaults)."""
    p.add_argument("--host", default="127.0.0.1", help=f"the {what}'s host")
    p.add_argument("--port", type=int, default=11112, help=f"the {what}'s port")
    p.add_argument("--aec", default=called_ae, help=f"called AE title (the {what})")
    p.add_argument("--aet", default="WFMSCU", help="our calling AE title")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the network and each answer")


def peer_of(args):
    from workflow.dimse.client import Peer
    return Peer(args.host, args.port, args.aec, args.aet, args.timeout)


def quiet_pynetdicom() -> None:
    """A tool says itself what failed, once: pynetdicom's error lines (e.g. a refused connection) would
    repeat it as log lines."""
    import logging
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


class BadInput(ValueError):
    """A mistake in a command line or a file: one line, exit status 1."""


def scu_command(name: str, func):
    """An SCU command: `func(args)` sends its requests and returns their steps (and notes, as text),
    printed on stderr. Exit status 0 when every request succeeded, 1 for bad input, 2 when no
    association came about, 3 when a request failed."""
    def run(args) -> int:
        from workflow.dimse.client import AssociationFailed, Step
        from workflow.ups.dimse.scu import InputError

        quiet_pynetdicom()
        try:
            lines = func(args)
        except (BadInput, InputError) as exc:
            print(f"wfm {name}: {exc}", file=sys.stderr)
            return 1
        except (AssociationFailed, OSError) as exc:
            print(f"wfm {name}: {exc}", file=sys.stderr)
            return 2
        for line in lines:
            print(line, file=sys.stderr)
        steps = [line for line in lines if isinstance(line, Step)]
        return 0 if steps and all(step.answer.ok for step in steps) else 3
    return run


class DefaultsHelp(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one its help does not already name."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text
