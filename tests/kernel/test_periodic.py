"""Periodic, the background workers' loop: a round's return value paces the next round only when the
worker says it is paced (a count taken for seconds once had a worker spin a core)."""

from __future__ import annotations

import time

import pytest

from workflow.kernel.worker import Periodic


def _rounds_in(worker: Periodic, seconds: float, counter: list[float]) -> int:
    worker.start()
    try:
        time.sleep(seconds)  # a measurement window, not a wait for a condition
    finally:
        worker.stop(5)
    return len(counter)


def test_a_round_returning_a_count_keeps_its_interval():
    rounds: list[float] = []

    def round_():
        rounds.append(time.monotonic())
        return 0  # "nothing expired": not seconds

    worker = Periodic("test-count", 0.2, round=round_)
    worker.wake.set()  # the first round at once
    assert _rounds_in(worker, 1.0, rounds) <= 7  # one at once, then one each 0.2 s; back to back: thousands


def test_a_paced_round_asks_for_its_next_round_sooner():
    rounds: list[float] = []

    def paced():
        rounds.append(time.monotonic())
        return 0.02  # a timer falls due in 20 ms

    worker = Periodic("test-paced", 10.0, paced=paced)
    worker.wake.set()
    assert _rounds_in(worker, 1.0, rounds) >= 10  # every ~20 ms, not every 10 s


def test_a_paced_round_returning_none_waits_its_interval():
    rounds: list[float] = []
    worker = Periodic("test-none", 10.0, paced=lambda: rounds.append(time.monotonic()))
    worker.wake.set()
    assert _rounds_in(worker, 0.5, rounds) == 1


def test_round_or_paced_not_both():
    with pytest.raises(TypeError):
        Periodic("test-both", 1.0, round=lambda: None, paced=lambda: None)
    with pytest.raises(TypeError):
        Periodic("test-neither", 1.0)
