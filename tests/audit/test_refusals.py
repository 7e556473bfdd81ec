"""Refusals told one by one up to `refusals_per_minute` per kind and source: a flood of refused
associations or refused tokens does not become a flood of log lines and audit records, and nothing is
dropped untold (the count arrives as one Security Alert when the minute ends, or when the server stops).

The limiter on its own (its timer, with a short window), then a real server on 127.0.0.1 flooded over
both faces, its audit records received by a syslog receiver of the tests' own."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest
from lxml import etree

from testkit.http import client, http_app
from testkit.ian import association
from workflow.access.tokens import Tokens
from workflow.audit.refusals import RefusalLimit


class Told:
    def __init__(self) -> None:
        self.summaries: list[tuple] = []
        self.arrived = threading.Event()

    def __call__(self, key, held) -> None:
        self.summaries.append((key, held.count, held.first <= held.last))
        self.arrived.set()


def test_past_the_limit_refusals_are_counted_and_the_count_told_when_the_window_ends():
    told = Told()
    limit = RefusalLimit(3, told, window=0.3)
    started = time.monotonic()
    assert [limit.admit("scanner") for _ in range(10)] == [True] * 3 + [False] * 7
    assert limit.admit("client") is True  # another source has a window of its own
    assert told.arrived.wait(5) and told.summaries == [("scanner", 7, True)]
    assert time.monotonic() - started >= 0.25  # told when the window ended, not at once
    assert limit.admit("scanner") is True  # a new window


def test_close_tells_what_is_held_at_once_and_nothing_twice():
    told = Told()
    limit = RefusalLimit(1, told, window=60)
    for _ in range(4):
        limit.admit(("alert", "10.0.0.9"))
    limit.close()
    assert told.summaries == [(("alert", "10.0.0.9"), 3, True)]
    limit.close()
    assert len(told.summaries) == 1


def test_no_limit_tells_every_refusal():
    told = Told()
    limit = RefusalLimit(0, told)
    assert all(limit.admit("anyone") for _ in range(1000)) and told.summaries == []


# ---------------------------------------------------------------- a real server, flooded

LIMIT, FLOOD = 4, 15


def alerts(messages) -> list[str]:
    """The EventOutcomeDescription of each Security Alert (110113) received."""
    out = []
    for _, _, xml in messages:
        document = etree.fromstring(xml)
        if document.find("EventIdentification/EventID").get("csd-code") == "110113":
            out.append(document.findtext("EventIdentification/EventOutcomeDescription") or "")
    return out


@pytest.mark.slow
def test_a_flood_of_refusals_is_told_up_to_the_limit_then_counted(database_url, syslog_receiver, caplog):
    before = len(syslog_receiver.messages)
    with caplog.at_level(logging.INFO), http_app(
            database_url, audit_repository=f"tcp://127.0.0.1:{syslog_receiver.port}",
            allowed_calling_aes=("MODALITY",), refusals_per_minute=LIMIT) as app:
        Tokens(app.engine).create("floodtest", "read")
        app.tokens._open_checked = None  # a token exists now: requests without one are refused
        for _ in range(FLOOD):
            with association(app.dicom.port, calling_ae="INTRUDER") as assoc:
                assert not assoc.is_established
        with client(app) as http:
            for _ in range(FLOOD):
                assert http.get("/api/events").status_code == 401
        rejected = [r for r in caplog.records if r.getMessage().startswith("association rejected")]
        assert len(rejected) == LIMIT  # one log line each, up to the limit
    # Stopping told the counts held back: one Security Alert per face, and a log line each.
    received = syslog_receiver.wait_for(
        lambda msgs: sum("more refusals" in text for text in alerts(msgs[before:])) == 2)
    texts = alerts(received[before:])
    assert sum(t.startswith("association rejected") for t in texts) == LIMIT
    assert sum(t.startswith("HTTP request refused (401)") for t in texts) == LIMIT
    summaries = sorted(t for t in texts if "more refusals" in t)
    expected = re.compile(rf"{FLOOD - LIMIT} more refusals \(Node Authentication\) from 127\.0\.0\.1 between "
                          rf"\S+Z and \S+Z, past {LIMIT} a minute: counted, not told one by one")
    assert len(summaries) == 2 and all(expected.fullmatch(t) for t in summaries), summaries
    assert sum("more refusals" in r.getMessage() for r in caplog.records) == 2
