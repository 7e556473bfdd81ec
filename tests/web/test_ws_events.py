"""UPS event reports over WebSocket, from the same outbox as DIMSE events: a UPS-RS subscriber that is
away gets every owed event, in commit order, when it reconnects; DIMSE and WebSocket subscribers hear the
same changes; events owed too long become undeliverable; ids follow commit order on PostgreSQL."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time

import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from testkit.http import EventSocket, http_app
from testkit.ups import GLOBAL, EventReceiver, claim, create_over_dimse, subscribe_globally, ups_association
from workflow.config import RemoteAE
from workflow.kernel.json_model import first
from workflow.ups import http_events
from workflow.ups.outbox import enqueue
from workflow.ups.tables import OutboxEvent

pytestmark = pytest.mark.slow

EVENT_TYPE, AFFECTED_UID, STATE = "00001002", "00001000", "00741000"


@pytest.fixture(scope="module")
def watcher():
    receiver = EventReceiver("DIMSESUB").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def app(database_url, watcher):
    with http_app(database_url, remote_ae=(RemoteAE("DIMSESUB", "127.0.0.1", watcher.port),),
                  event_retry_initial=0.2, event_retry_max_interval=0.5) as app:
        yield app


def owed(app, ae_title: str, status: str | None = None) -> list[tuple[int, str, int]]:
    """(id, workitem, event type) of the subscriber's outbox rows (of one status), in id order."""
    t = OutboxEvent.__table__
    query = select(t.c.id, t.c.workitem_uid, t.c.event_type_id).where(t.c.receiving_ae == ae_title)
    if status:
        query = query.where(t.c.status == status)
    with app.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query.order_by(t.c.id))]


def test_a_report_carries_the_ups_and_command_attributes(app):
    subscribe_globally(app, "WSONE")
    with EventSocket(app, "WSONE") as socket:
        uid = create_over_dimse(app)
        report = socket.next()
    assert report[AFFECTED_UID]["Value"] == [uid] and report[EVENT_TYPE]["Value"] == [1]
    assert report["00000002"]["Value"] == ["1.2.840.10008.5.1.4.34.6.4"] and "00000110" in report
    assert first(report, STATE) == "SCHEDULED" and first(report, "00404041") == "READY"


def test_events_owed_while_away_arrive_in_commit_order_on_reconnect(app):
    subscribe_globally(app, "WSAWAY")
    with EventSocket(app, "WSAWAY") as socket:
        first_uid = create_over_dimse(app)
        assert socket.next()[AFFECTED_UID]["Value"] == [first_uid]
        wait_until(lambda: not owed(app, "WSAWAY", "PENDING"))  # its Assigned report too
    # Away: changes interleaved over several workitems (creations, claims, a cancellation).
    uids = [create_over_dimse(app) for _ in range(4)]
    with ups_association(app.dicom.port) as assoc:
        for uid in uids[:3]:
            assert claim(assoc, uid)[0].Status == 0
    expected = [(uid, kind) for _, uid, kind in owed(app, "WSAWAY", "PENDING")]
    assert len(expected) >= 7
    with EventSocket(app, "WSAWAY") as socket:
        got = [(r[AFFECTED_UID]["Value"][0], r[EVENT_TYPE]["Value"][0]) for r in socket.take(len(expected))]
    assert got == expected
    wait_until(lambda: not owed(app, "WSAWAY", "PENDING"))  # each marked once written


def test_dimse_and_websocket_subscribers_hear_the_same_change(app, watcher):
    subscribe_globally(app, "WSBOTH")
    subscribe_globally(app, "DIMSESUB", websocket=False)
    with EventSocket(app, "WSBOTH") as socket:
        uid = create_over_dimse(app)
        over_ws = socket.next()
    over_dimse = watcher.wait(lambda r: r.uid == uid)
    assert over_ws[AFFECTED_UID]["Value"] == [uid] and over_dimse.event_type == 1
    assert first(over_ws, STATE) == over_dimse.info.ProcedureStepState == "SCHEDULED"


def test_a_socket_for_a_configured_remote_ae_is_refused(app):
    with pytest.raises(ConnectionClosed) as closed:
        with EventSocket(app, "DIMSESUB") as socket:
            socket.next(timeout=5)
    assert closed.value.rcvd.code == 1008 and "DIMSE" in closed.value.rcvd.reason


def test_frames_a_subscriber_sends_are_ignored(app):
    """The channel carries events one way; a text or binary frame from the subscriber changes nothing."""
    subscribe_globally(app, "WSCHATTY")
    with EventSocket(app, "WSCHATTY") as channel:
        channel.socket.send(b"\x00\x01")
        channel.socket.send("hello")
        uid = create_over_dimse(app)
        assert channel.next()[AFFECTED_UID]["Value"] == [uid]


@pytest.mark.parametrize("title", ["A%00B", "A%0AB", "%C3%A9T", "ABCDEFGHIJKLMNOPQ", "A%5CB"])
def test_a_socket_for_an_invalid_ae_title_is_refused(app, title):
    """As Subscribe refuses it: 1-16 printable characters of the default repertoire, no backslash."""
    with pytest.raises(ConnectionClosed) as closed:
        with EventSocket(app, title) as socket:
            socket.next(timeout=5)
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "not a valid AE title"


def test_a_newer_socket_replaces_the_older(app):
    subscribe_globally(app, "WSTWICE")
    older = EventSocket(app, "WSTWICE")
    with EventSocket(app, "WSTWICE") as newer:
        with pytest.raises(ConnectionClosed) as closed:
            older.next(timeout=5)
        assert closed.value.rcvd.code == 4000
        uid = create_over_dimse(app)
        assert newer.next()[AFFECTED_UID]["Value"] == [uid]


def stalled_socket(app, ae_title: str) -> socket.socket:
    """A subscriber that opens its event channel and then never reads (a receive buffer of a few KB)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(15)
    raw.connect(("127.0.0.1", app.http.port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(f"GET /dicom-web/subscribers/{ae_title} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(1)  # the handshake only: the first event stays unread
    assert answer.startswith(b"HTTP/1.1 101"), answer
    wait_until(lambda: ae_title in app.event_hub.sockets)
    return raw


def test_a_subscriber_that_stops_reading_holds_up_no_other(app):
    """One subscriber stops reading mid-stream: another still gets every event at once; the silent one's
    socket is closed after the send timeout, and what it did not take stays owed and arrives, in order,
    when it connects again."""
    subscribe_globally(app, "WSSTALLED")
    subscribe_globally(app, "WSLIVELY")
    app.event_hub.send_timeout = 4.0
    raw = stalled_socket(app, "WSSTALLED")
    try:
        with EventSocket(app, "WSLIVELY") as lively:
            wait_until(lambda: "WSLIVELY" in app.event_hub.sockets)
            # 6.4 MB in all: more than the kernel buffers of a loopback connection hold (4 MB)
            count, padding = 400, {"0040A160": {"vr": "UT", "Value": ["x" * 16000]}}
            with app.engine.begin() as conn:
                for n in range(count):
                    enqueue(conn, ["WSSTALLED", "WSLIVELY"], f"1.2.3.{n}", 5, padding, time_now())
            app.events_written.fire()
            got = [lively.next()[AFFECTED_UID]["Value"][0] for _ in range(count)]
            assert got == [f"1.2.3.{n}" for n in range(count)]
            # All of them, while the silent subscriber's socket is still held up (not yet timed out).
            assert "WSSTALLED" in app.event_hub.sockets
        wait_until(lambda: "WSSTALLED" not in app.event_hub.sockets, timeout=30)
        left = [uid for _, uid, _ in owed(app, "WSSTALLED", "PENDING")]
        assert 0 < len(left) < count and left == [f"1.2.3.{n}" for n in range(count - len(left), count)]
    finally:
        app.event_hub.send_timeout = http_events.SEND_TIMEOUT
        raw.close()
    with EventSocket(app, "WSSTALLED") as again:
        assert [again.next()[AFFECTED_UID]["Value"][0] for _ in left] == left


@pytest.mark.parametrize("http", [True, False], ids=["http on", "http off"])
def test_events_owed_too_long_become_undeliverable(database_url, http):
    """Also with HTTP off: a subscriber made by another process, whose events this one must still expire."""
    settings = dict(event_retry_initial=0.1, event_retry_max_interval=0.1, event_retry_for=0.5)
    with http_app(database_url, http=http, **settings) as app:
        subscribe_globally(app, "WSGONE")
        create_over_dimse(app)
        t = OutboxEvent.__table__
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with app.engine.connect() as conn:
                found = set(conn.execute(select(t.c.status).where(t.c.receiving_ae == "WSGONE")).scalars())
            if found == {"UNDELIVERABLE"}:
                break
            time.sleep(0.05)
        assert found == {"UNDELIVERABLE"}


def test_stopping_closes_sockets_and_a_restart_delivers_what_is_owed(database_url):
    settings = dict(event_retry_initial=0.2, event_retry_max_interval=0.5)
    with http_app(database_url, **settings) as app:
        subscribe_globally(app, "WSRESTART")
        socket = EventSocket(app, "WSRESTART")
        create_over_dimse(app)
        socket.next()
    with pytest.raises(ConnectionClosed) as closed:
        while True:  # what else was owed, then the close
            socket.next(timeout=10)
    assert closed.value.rcvd.code == 1001  # going away: the server stopped
    with http_app(database_url, **settings) as app:  # back, while the subscriber is still away
        owed_uid = create_over_dimse(app)
    with http_app(database_url, **settings) as app:  # and back again: the subscriber reconnects
        waiting = len(owed(app, "WSRESTART", "PENDING"))
        with EventSocket(app, "WSRESTART") as socket:
            # What was owed, in order: status changes (going down, restarted) and the workitem's reports.
            about = [socket.next()[AFFECTED_UID]["Value"][0] for _ in range(waiting)]
    assert owed_uid in about and about.count(GLOBAL) >= 2


@pytest.mark.postgres
def test_outbox_ids_follow_commit_order_on_postgresql(app):
    """Two transactions write events; the one that wrote first commits last. Events are inserted at
    COMMIT under the commit-order lock, so the ids follow the commits (a reader never sees a higher id
    committed while a lower one is not), and the first, still open, does not hold up the second."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises every writer already (BEGIN IMMEDIATE)")
    first_txn = app.engine.connect()
    first_txn.begin()
    enqueue(first_txn, ["ORDER"], "1.2.3.1", 1, {}, time_now())
    second_done = threading.Event()

    def second() -> None:
        with app.engine.begin() as conn:
            enqueue(conn, ["ORDER"], "1.2.3.2", 1, {}, time_now())
        second_done.set()

    worker = threading.Thread(target=second)
    worker.start()
    assert second_done.wait(10), "the second writer waited for the first, still open"
    first_txn.commit()
    first_txn.close()
    worker.join(10)
    ids = [i for i, uid, _ in owed(app, "ORDER")]
    assert [uid for _, uid, _ in owed(app, "ORDER")] == ["1.2.3.2", "1.2.3.1"] and ids == sorted(ids)


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def time_now():
    from workflow.kernel.clock import utcnow
    return utcnow()
