"""The readiness worker: evaluates the studies IANs and MPPS marked (also those another process or a
restart left: the marks are rows), and fires the settle timers that fall due (rows too, so a restart
loses none). Each round writes State Reports; `events` wakes their senders."""

from __future__ import annotations

import logging
import threading
import time

from workflow.config import Settings
from workflow.kernel.clock import utcnow
from workflow.kernel.ports import Signal
from workflow.kernel.worker import Periodic
from workflow.readiness.service import ReadinessService

log = logging.getLogger("workflow.readiness")

FALLBACK = 30.0  # seconds: the longest either thread sleeps without a wake-up


class ReadinessWorker:
    def __init__(self, service: ReadinessService, settings: Settings, events: Signal) -> None:
        self.service, self.settings, self.events = service, settings, events
        self._stopping = threading.Event()
        self._evaluator = threading.Thread(target=self._evaluate_marked, name="wfm-readiness", daemon=True)
        self.timers = Periodic("wfm-readiness-timers", FALLBACK, paced=self._fire_timers, wake=service.timers_wake)
        self._timer_writes = 0  # the service's count of timers written, when the timer thread last looked

    def start(self) -> None:
        self.service.wake.set()  # what a restart left pending, and the timers, are looked at once at start
        self.service.timers_wake.set()
        self._evaluator.start()
        self.timers.start()

    def stop(self, timeout: float) -> None:
        """Stop both threads; an evaluation under way finishes first (up to `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self.service.wake.set()
        self.timers.stop(timeout)
        if self._evaluator.is_alive():
            self._evaluator.join(max(1.0, deadline - time.monotonic()))

    def _evaluate_marked(self) -> None:
        """A study is evaluated once it has been quiet for `readiness_delay` (a burst of IANs costs one
        evaluation), or after `readiness_max_wait` during a long burst; the loop never spends more than
        half its time evaluating."""
        delay = self.settings.readiness_delay
        max_wait = max(delay, self.settings.readiness_max_wait)
        wake = self.service.wake
        while not self._stopping.is_set():
            due = self.service.next_due
            timeout = FALLBACK if due is None else min(FALLBACK, max(0.0, (due - utcnow()).total_seconds()))
            if wake.wait(timeout):
                self._stopping.wait(delay)  # woken by a mark: the wait lets the rest of its burst arrive
            if self._stopping.is_set():
                return
            wake.clear()
            started = time.monotonic()
            writes = self.service.timer_writes
            try:
                if self.service.run_pending(utcnow(), quiet=delay, max_wait=max_wait):
                    self.events.fire()
                if self.service.timer_writes != writes:  # committed now: the timer thread sees them
                    self.service.timers_wake.set()
            except Exception:  # noqa: BLE001 - the marks stay; the next round retries
                log.exception("readiness evaluation failed")
            self._stopping.wait(time.monotonic() - started)

    def _fire_timers(self) -> float | None:
        """Fire the due timers; returns the seconds until the next one. A timer written since the last
        look may not have committed yet (a workitem's N-CREATE writes it in its transaction): look again
        shortly after."""
        writes = self.service.timer_writes
        now = utcnow()
        if self.service.fire_due_timers(now):
            self.events.fire()
        due = self.service.next_timer()
        wait = None if due is None else max(0.0, (due - now).total_seconds())
        if writes != self._timer_writes:
            self._timer_writes = writes
            wait = 0.5 if wait is None else min(wait, 0.5)
        return wait
