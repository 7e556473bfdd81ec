"""Refusals told one by one up to a limit. A source refused over and over (a port scanner on the TLS
port, a client retrying a revoked token) must not turn each refusal into a log line and an audit record
written in a transaction of its own: that is a way to fill the disk and hold the database's write lock.

Per kind of refusal and source address, the first `per_minute` in a minute are told one by one; the
rest are counted, and the count is told once when that minute ends, by a timer started only while a
count is held. Nothing is dropped untold; `close` tells what is held at once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Hashable

from workflow.kernel.clock import utcnow

WINDOW = 60.0  # seconds
PRUNE_ABOVE = 1024  # windows kept before the ended ones without a count are dropped


@dataclass
class Held:
    """Refusals of one kind from one source that were counted, not told."""

    count: int = 0
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class _Window:
    started: float  # monotonic
    told: int = 0
    held: Held = field(default_factory=Held)
    timer: threading.Timer | None = None


class RefusalLimit:
    """`admit(key)`: True when this refusal is to be told one by one. `summarise(key, held)` is called
    for each window that ended with a count (in the timer's thread, or in `close`'s)."""

    def __init__(self, per_minute: int, summarise: Callable[[Hashable, Held], None], window: float = WINDOW) -> None:
        self.per_minute = per_minute  # 0: every refusal is told
        self.summarise = summarise
        self.window = window
        self._windows: dict[Hashable, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, key: Hashable) -> bool:
        if not self.per_minute:
            return True
        now = time.monotonic()
        with self._lock:
            current = self._windows.get(key)
            if current is None or now - current.started >= self.window:
                if len(self._windows) >= PRUNE_ABOVE:
                    self._prune(now)
                current = self._windows[key] = _Window(now)  # an ended window's count is its timer's to tell
            if current.told < self.per_minute:
                current.told += 1
                return True
            held, at = current.held, utcnow()
            held.count += 1
            held.first, held.last = held.first or at, at
            if current.timer is None:
                current.timer = threading.Timer(max(0.0, current.started + self.window - now), self._end,
                                                (key, current))
                current.timer.daemon = True
                current.timer.name = "wfm-refusals"
                current.timer.start()
            return False

    def close(self) -> None:
        """Tell every count held now (the server is stopping)."""
        with self._lock:
            ending = [(key, w) for key, w in self._windows.items() if w.timer is not None]
        for key, current in ending:
            current.timer.cancel()
            self._end(key, current)

    def _end(self, key: Hashable, current: _Window) -> None:
        with self._lock:
            if self._windows.get(key) is current:
                del self._windows[key]
            held, current.held = current.held, Held()
        if held.count:
            self.summarise(key, held)

    def _prune(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if w.timer is None and now - w.started >= self.window]:
            del self._windows[key]
