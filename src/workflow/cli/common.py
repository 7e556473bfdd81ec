"""What every `wfm` command shares: settings, the database (opened without ever creating it for a
command that only reads), plain-text tables, the one-line errors a user gets instead of tracebacks, and
the options and outcome of the SCU tools."""

from __future__ import annotations

import sys
from pathlib import Path

from workflow.config import Settings, load_settings, mask_url


class CliError(Exception):
    """A mistake the user can make (wrong port, missing file, no database): one line, what to do."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def settings_of(args) -> Settings:
    return load_settings(args.config)


def engine_of(args, *, allow_old_schema: bool = False):
    """The database of a command that only reads: it must exist with this version's schema (any schema,
    with `allow_old_schema`). A read never creates a database (on SQLite: no empty file left behind)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from workflow.store import migrate
    from workflow.store.engine import make_engine

    settings = settings_of(args)
    url = make_url(settings.database_url)
    shown = mask_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not Path(url.database).exists():
            raise CliError(f"no database at {Path(url.database).resolve()} (database_url = {shown}): "
                           "`wfm serve` creates it on its first start, or set database_url (--config, "
                           "WFM_DATABASE_URL) to the server's database")
    engine = make_engine(settings.database_url)
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise CliError(f"cannot open the database {shown}: {getattr(exc, 'orig', exc)}") from None
    if current != head and not (allow_old_schema and current is not None):
        engine.dispose()
        state = "has no schema" if current is None else f"is at schema revision {current}, this wfm needs {head}"
        raise CliError(f"the database {shown} {state}: run `wfm db upgrade`")
    return engine


def with_store(func):
    """A command that writes: the settings and a migrated database (created when missing)."""
    def run(args) -> int:
        from workflow.store import migrate
        from workflow.store.engine import make_engine
        settings = settings_of(args)
        engine = make_engine(settings.database_url)
        migrate.upgrade(engine)
        try:
            return func(args, settings, engine)
        finally:
            engine.dispose()
    return run


def with_read_store(func):
    """A command that only reads: the settings and the existing database (see engine_of)."""
    def run(args) -> int:
        engine = engine_of(args)
        try:
            return func(args, settings_of(args), engine)
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


class BadInput(ValueError):
    """A mistake in a command line or a file: one line, exit status 1."""


def scu_command(name: str, func):
    """An SCU command: `func(args)` sends its requests and returns their steps (and notes, as text),
    printed on stderr. Exit status 0 when every request succeeded, 1 for bad input, 2 when no
    association came about, 3 when a request failed."""
    def run(args) -> int:
        from workflow.dimse.client import AssociationFailed, Step
        from workflow.ups.dimse.scu import InputError

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
