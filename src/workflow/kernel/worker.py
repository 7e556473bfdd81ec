"""Background threads the features run: each waits for its wake-up or its interval, does one round,
and stops within its round when asked. A round that fails is logged and retried next time."""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("workflow.workers")


class Periodic:
    """Runs `round()` when `wake` is set, or after `every` seconds at the latest (the safety net), until
    `stop()`; with no work and no wake-up the thread costs nothing but the fallback round. Given as
    `paced`, a round returns how many seconds until it needs the next (a timer falling due; None: no
    sooner than `every`), which shortens that wait. Only then: a count a round returned, taken for
    seconds, once made a worker run back to back (0 s) and spin a core."""

    def __init__(self, name: str, every: float, *, round: Callable[[], object] | None = None,
                 paced: Callable[[], float | None] | None = None, wake: threading.Event | None = None) -> None:
        if (round is None) == (paced is None):
            raise TypeError("Periodic takes exactly one of round and paced")
        self.name, self.every = name, every
        self.round, self.paced = (paced, True) if paced is not None else (round, False)
        self.wake = wake or threading.Event()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Ask the thread to stop and wait for a round under way (up to `timeout` seconds)."""
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))

    def _run(self) -> None:
        wait = self.every
        while not self.stopping.is_set():
            self.wake.wait(wait)
            self.wake.clear()
            if self.stopping.is_set():
                return
            wait = self.every
            try:
                sooner = self.round()
            except Exception:  # noqa: BLE001 - a failed round is retried; the server stays up
                log.exception(f"{self.name} failed")
                continue
            if self.paced and sooner is not None:
                wait = min(self.every, max(0.0, sooner))
