"""The event sender's right to deliver to a subscriber, across every server process on one database:
a PostgreSQL advisory lock per subscriber, held on one connection of the sender's own (SQLite serves
one process and needs none).

Held for as long as the sender keeps an association open to the subscriber, not per round: while it
is held, no other process delivers to that subscriber, so what the sender read of its owed events is
still owed, and a round for a subscriber already held costs one read before the send (not a lock, a
read and an unlock around it). The connection runs every statement as its own transaction; the
sender's reads and marks use it too, so a round checks nothing out of the pool. It goes back to the
pool once no lease is held (the pool checks a connection that sat idle before handing it out again)."""

from __future__ import annotations

import zlib

from sqlalchemy import Connection, Engine, text


class Leases:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None
        self.held: set[str] = set()

    @property
    def conn(self) -> Connection | None:
        """The sender's connection (PostgreSQL), opened on first use; None on SQLite."""
        if self.postgres and self._conn is None:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def take(self, receiving_ae: str) -> tuple[bool, bool]:
        """(held, new): whether the sender may deliver to the subscriber now, and whether it has only just
        got that right (then events read before may since have been delivered by another process)."""
        if not self.postgres or receiving_ae in self.held:
            return True, False
        if not self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(receiving_ae)}).scalar():
            return False, False
        self.held.add(receiving_ae)
        return True, True

    def keep_only(self, receiving_aes) -> None:
        """Give up every lease but those of `receiving_aes` (the subscribers with an association open),
        and the connection with the last one."""
        for ae in self.held - set(receiving_aes):
            self.held.discard(ae)
            self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(ae)})
        if not self.held and self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()  # every lock released above: back to the pool clean

    def close(self) -> None:
        """Give up every lease and the connection; after a database error too, when the connection, and
        the leases with it, may be gone already."""
        self.held.clear()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:  # session locks outlive a connection's return to the pool
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.close()
        except Exception:  # noqa: BLE001 - a connection already broken: dropped, the server frees its locks
            conn.invalidate()
            conn.close()


def _key(receiving_ae: str) -> int:
    return zlib.crc32(f"wfm-outbox:{receiving_ae}".encode()) & 0x7FFFFFFF
