"""Many rows in one go, without SQLAlchemy's per-row work: a statement compiled once and run with
`exec_driver_sql` on positional tuples (SQLite), or each column's values as one array for `unnest`
(PostgreSQL: one execution and one round trip whatever the number of rows)."""

from __future__ import annotations

from sqlalchemy import String, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY


def bind_processor(column, dialect):
    """What SQLAlchemy does to a value bound to `column` before the driver sees it (None: nothing)."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def positional_sql(stmt, dialect, order: tuple[str, ...], processed: tuple[str, ...] = ()) -> str:
    """The statement's SQL for positional values in `order`, refused (at start-up) if SQLAlchemy would
    bind them otherwise or would process a value other than those `processed` (which the caller
    processes itself) that the caller passes as it is."""
    compiled = stmt.compile(dialect=dialect)
    if tuple(compiled.positiontup or ()) != order:
        raise RuntimeError(f"{stmt.table.name} statement binds {compiled.positiontup}, not {order}")
    # A value bound to a column is processed as the column's; one compared in a WHERE, as its bind's.
    unprocessed = [name for name in order if name not in processed
                   and bind_processor(stmt.table.c[name] if name in stmt.table.c else compiled.binds[name],
                                      dialect) is not None]
    if unprocessed:
        raise RuntimeError(f"{stmt.table.name} statement would process {unprocessed}: the caller passes them as they are")
    return compiled.string


def array_names(prefix: str, columns: tuple[str, ...]) -> list[str]:
    """The bound parameters `unnest` takes the columns' arrays from."""
    return [f"{prefix}_{name}" for name in columns]


def unnest(prefix: str, columns: tuple[str, ...]):
    """PostgreSQL: a derived table `prefix` of text columns, one row per element of the arrays bound
    to `array_names(prefix, columns)`."""
    arrays = (bindparam(name, type_=ARRAY(String)) for name in array_names(prefix, columns))
    return func.unnest(*arrays).table_valued(*columns).render_derived(name=prefix)
