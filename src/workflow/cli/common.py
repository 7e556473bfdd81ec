"""What every `wfm` command shares: settings, the database engine, plain-text tables."""

from __future__ import annotations

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
