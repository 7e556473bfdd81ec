"""Workers that cost nothing without work: an idle server runs no SQL; the event sender wakes when an
event is written (in this process, or by another process's commit on PostgreSQL: NOTIFY) and keeps one
association open to a busy subscriber; the readiness worker wakes for another process's mark."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import event, text

from testkit.db import test_settings
from testkit.ups import EventReceiver, workitem
from workflow import app as app_module
from workflow.app import App
from workflow.config import RemoteAE
from workflow.readiness import worker as readiness_worker
from workflow.readiness.service import PendingMarks
from workflow.store.engine import make_engine
from workflow.ups.dimse import event_sender
from workflow.ups.leases import Leases
from workflow.ups.outbox import enqueue

GLOBAL = "1.2.840.10008.5.1.4.34.5"


@pytest.fixture(scope="module")
def subscriber():
    receiver = EventReceiver("WAKESUB").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def app(database_url, subscriber):
    app = App(test_settings(database_url, remote_ae=(RemoteAE("WAKESUB", "127.0.0.1", subscriber.port),)))
    app.start()
    info = Dataset()
    info.ReceivingAE, info.DeletionLock = "WAKESUB", "FALSE"
    assert app.worklist.subscribe(GLOBAL, info.to_json_dict()).status.code == 0
    yield app
    app.stop()


@pytest.fixture
def statements(app):
    """Count the SQL statements the server's engine runs from now on."""
    seen: list[str] = []
    lock = threading.Lock()

    def count(conn, cursor, statement, *args):
        with lock:
            seen.append(statement)

    event.listen(app.engine, "before_cursor_execute", count)
    yield seen
    event.remove(app.engine, "before_cursor_execute", count)


def _wait(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, what
        time.sleep(0.01)
    return time.monotonic() - started


def test_an_idle_server_runs_no_sql(app, statements):
    # The first rounds at start-up (what a restart left pending, timers) are over once a second passes
    # without a statement.
    quiet_since = time.monotonic()
    seen = 0
    while time.monotonic() - quiet_since < 1.0:
        assert len(statements) < 100, "never quiet"
        if len(statements) != seen:
            seen, quiet_since = len(statements), time.monotonic()
        time.sleep(0.05)
    statements.clear()
    time.sleep(2.0)  # a measurement window, not a wait for a condition
    assert statements == []


def test_an_idle_server_stays_quiet_after_its_fallback_rounds(database_url, monkeypatch):
    """Every worker's safety-net round runs once per interval, not back to back. The intervals (30 s to
    10 min in service) are cut to a second or less, so each worker runs several rounds in the window.
    The event expiry round returned its count, 0, which its worker took for "the next round is due in
    0 s": from its first round on, an idle server spun a core."""
    monkeypatch.setattr(app_module, "HOUSEKEEPING_EVERY", 0.5)
    monkeypatch.setattr(readiness_worker, "FALLBACK", 0.5)
    monkeypatch.setattr(event_sender, "FALLBACK", 0.5)
    # The expiry interval is a quarter of event_retry_for, at least 1 s.
    app = App(test_settings(database_url, event_retry_initial=0.5, event_retry_max_interval=1.0,
                            event_retry_for=4.0))
    seen: list[tuple[float, str]] = []

    def count(conn, cursor, statement, *args):
        seen.append((time.monotonic(), statement))

    event.listen(app.engine, "before_cursor_execute", count)
    app.start()
    try:
        # A measurement window of 3.5 s after the first second: its statements, and the CPU this
        # process (the server's threads) used in it.
        time.sleep(1.0)
        opened, cpu = time.monotonic(), time.process_time()
        time.sleep(3.5)
        cpu = time.process_time() - cpu
        window = [statement for at, statement in seen if at > opened]
        assert len(window) < 200, f"{len(window)} statements in 3.5 s of an idle server"
        assert cpu < 1.0, f"{cpu:.2f} s of CPU in 3.5 s of an idle server"  # a thread that spins: ~3.5 s
        # Each worker did run its rounds in the window: the test watched them, not a server asleep.
        for what, marker in (("expiry", "outbox_event.created_at <"), ("housekeeping", "workitem.finished_at <"),
                             ("readiness", "FROM readiness_pending")):
            rounds = sum(marker in statement for statement in window)
            assert rounds >= 2, f"{what}: {rounds} rounds in 3.5 s"
    finally:
        event.remove(app.engine, "before_cursor_execute", count)
        app.stop()


def test_a_stream_of_events_to_a_subscriber_uses_one_association(app, subscriber):
    before = subscriber.associations
    uids = [generate_uid() for _ in range(5)]
    for uid in uids:  # a State Report each (global subscription), one after another
        assert app.worklist.create(uid, workitem(InputReadinessState="READY").to_json_dict()).status.code == 0
    for uid in uids:
        subscriber.wait(lambda r, uid=uid: r.uid == uid)
    assert subscriber.associations - before <= 1


def test_another_process_writing_an_event_wakes_the_sender(app, subscriber, database_url):
    """A second engine stands for another server process on the database: its commit wakes this server's
    sender through NOTIFY, long before the sender's fallback interval (60 s)."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serves one process")
    assert app.wakeups.listening.wait(10)
    other = make_engine(database_url)
    uid = generate_uid()
    try:
        with other.begin() as conn:
            enqueue(conn, ["WAKESUB"], uid, 1, {"00741000": {"vr": "CS", "Value": ["SCHEDULED"]}},
                    datetime.now(timezone.utc))
        started = time.monotonic()
        subscriber.wait(lambda r: r.uid == uid, timeout=10)
        assert time.monotonic() - started < 5
    finally:
        other.dispose()


def test_another_process_marking_a_study_wakes_readiness(app, database_url):
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serves one process")
    assert app.wakeups.listening.wait(10)
    other = make_engine(database_url)
    try:
        with other.begin() as conn:  # as `wfm reconcile run` does
            PendingMarks().mark(conn, generate_uid(), datetime.now(timezone.utc))
        assert _wait(lambda: app.readiness.pending() == 0, 10, "the mark was never evaluated") < 5
    finally:
        other.dispose()


def test_an_event_to_a_subscriber_with_its_association_open_costs_one_read_before_the_send(app, subscriber):
    """While the sender keeps an association open to a subscriber it keeps its lease too: the round an
    event wakes reads what is owed in one statement, sends, and marks it delivered (no lock, re-read
    and unlock around the send)."""
    first = generate_uid()
    assert app.worklist.create(first, workitem(InputReadinessState="READY").to_json_dict()).status.code == 0
    subscriber.wait(lambda r: r.uid == first)  # the association to it is open now
    _wait(lambda: app.outbox.backlog() == 0, 5, "events stayed owed")
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        if threading.current_thread().name == "wfm-event-sender":
            seen.append(statement.split()[0].upper())

    event.listen(app.engine, "before_cursor_execute", count)
    try:
        uid = generate_uid()
        assert app.worklist.create(uid, workitem(InputReadinessState="READY").to_json_dict()).status.code == 0
        subscriber.wait(lambda r: r.uid == uid)
        _wait(lambda: "UPDATE" in seen, 5, "the event was never marked delivered")
    finally:
        event.remove(app.engine, "before_cursor_execute", count)
    before_the_mark = seen[:seen.index("UPDATE")]
    assert [s for s in before_the_mark if s == "SELECT"] == ["SELECT"], seen


def test_a_delivery_lease_is_one_senders_until_it_lets_go(app, database_url):
    """Two senders (two server processes) on one PostgreSQL: a subscriber's lease is held by one until it
    gives it up, and a sender that closes gives up all of its leases, also on the pooled connection."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serves one process")
    engines = [make_engine(database_url) for _ in range(2)]
    mine, theirs = (Leases(e) for e in engines)
    try:
        assert mine.take("LEASED") == (True, True)
        assert mine.take("LEASED") == (True, False)  # still held: what was read stays owed
        assert theirs.take("LEASED") == (False, False)
        mine.keep_only(["OTHER"])
        assert theirs.take("LEASED") == (True, True)
        assert mine.take("LEASED") == (False, False)
        theirs.close()
        assert mine.take("LEASED") == (True, True)
        mine.close()
        with engines[0].connect() as pooled:  # the connection the leases were held on, back in the pool
            held = pooled.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                       "AND pid = pg_backend_pid()")).scalar()
        assert held == 0
    finally:
        mine.close()
        theirs.close()
        for e in engines:
            e.dispose()
