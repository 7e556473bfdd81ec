"""The audit trail end to end, on a real server and a syslog syslog_receiver of the tests' own: each audited
event arrives as one valid DICOM Audit Message per syslog message, in the order the changes committed;
when the repository is down nothing is lost: `wfm audit --pending` lists what is owed, and everything
arrives, in order, once it is back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from lxml import etree
from pydicom.uid import generate_uid

from workflow.audit.rules.messages import application_activity
from workflow.audit.trail import AuditTrail
from workflow.store.engine import make_engine

from testkit.audit import SyslogReceiver, schema_errors, valid
from testkit.http import client, http_app
from testkit.ian import association, make_ian, send
from testkit.ups import PUSH, claim, ups_association, workitem

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(database_url, syslog_receiver):
    with http_app(database_url, audit_repository=f"tcp://127.0.0.1:{syslog_receiver.port}", audit_source_id="WFMTEST",
                  allowed_calling_aes=("SCHEDULER", "MODALITY"), event_retry_initial=0.2,
                  event_retry_max_interval=0.5) as app:
        yield app


def events(messages) -> list[tuple[str, str, str]]:
    """(event ID, type code or "", action) of each message."""
    out = []
    for _, _, xml in messages:
        ident = etree.fromstring(xml).find("EventIdentification")
        kind = ident.find("EventTypeCode")
        out.append((ident.find("EventID").get("csd-code"), kind.get("csd-code") if kind is not None else "",
                    ident.get("EventActionCode")))
    return out


def _without_activity(messages) -> list:
    return [m for m, event in zip(messages, events(messages)) if event[0] != "110100"]


def test_audited_events_arrive_valid_and_in_order(app, syslog_receiver):
    syslog_receiver.wait_for(lambda msgs: any(e == ("110100", "110120", "E") for e in events(msgs)))  # the start
    before = len(syslog_receiver.messages)
    uid = generate_uid()
    with ups_association(app.dicom.port) as assoc:
        assert assoc.send_n_create(workitem(), PUSH, uid)[0].Status == 0
        assert claim(assoc, uid)[0].Status == 0
    with association(app.dicom.port) as assoc:
        assert send(assoc, make_ian())[0].Status == 0
    with client(app) as http:
        assert http.get("/dicom-web/workitems?ProcedureStepState=SCHEDULED").status_code in (200, 204, 404)
    # Without Application Activity (110100): the receiver serves the module's servers in turn, and the
    # start this test waited for may be an earlier server's, this one's still on its way.
    got = _without_activity(syslog_receiver.wait_for(lambda msgs: len(_without_activity(msgs[before:])) >= 3)[before:])
    assert all(valid(xml) for _, _, xml in got), [schema_errors(xml) for _, _, xml in got]
    assert [msgid for _, msgid, _ in got] == ["IHE+RFC-3881"] * len(got)
    assert events(got)[:3] == [("110111", "", "C"), ("110111", "", "U"), ("110107", "", "C")]
    ids = [record for record, _, _ in got]
    assert ids == sorted(ids)
    created = etree.fromstring(got[0][2])
    assert created.find("ActiveParticipant").get("UserID") == "SCHEDULER"
    assert created.find("AuditSourceIdentification").get("AuditSourceID") == "WFMTEST"


def test_a_refused_association_is_a_security_alert(app, syslog_receiver):
    before = len(syslog_receiver.messages)
    with association(app.dicom.port, calling_ae="INTRUDER") as assoc:
        assert not assoc.is_established
    got = syslog_receiver.wait_for(lambda msgs: any(e[:2] == ("110113", "110126") for e in events(msgs[before:])))
    alert = next(xml for (_, _, xml), e in zip(got[before:], events(got[before:])) if e[:2] == ("110113", "110126"))
    document = etree.fromstring(alert)
    assert document.find("ActiveParticipant").get("UserID") == "INTRUDER"
    assert document.find("EventIdentification").get("EventOutcomeIndicator") == "4"


def test_nothing_is_lost_while_the_repository_is_down(app, syslog_receiver, database_url):
    syslog_receiver.stop()
    uids = [generate_uid() for _ in range(15)]
    with ups_association(app.dicom.port) as assoc:
        for uid in uids:
            assert assoc.send_n_create(workitem(), PUSH, uid)[0].Status == 0
    pending = subprocess.run([sys.executable, "-m", "workflow", "audit", "--json"], capture_output=True, text=True,
                             env={"WFM_DATABASE_URL": database_url, "PATH": ""}, timeout=60)
    owed = json.loads(pending.stdout)
    assert len(owed) >= 15 and all(r["status"] == "PENDING" for r in owed)
    restarted = SyslogReceiver(syslog_receiver.port).start()
    try:
        got = restarted.wait_for(lambda msgs: {u for u in uids} <= {
            o.get("ParticipantObjectID") for _, _, xml in msgs
            for o in etree.fromstring(xml).findall("ParticipantObjectIdentification")}, timeout=60)
    finally:
        restarted.stop()
        syslog_receiver.start()
    announced = [o.get("ParticipantObjectID") for _, _, xml in got
                 for o in etree.fromstring(xml).findall("ParticipantObjectIdentification")[:1]]
    first_seen = [u for u in dict.fromkeys(announced) if u in uids]
    assert first_seen == uids  # every one, in the order they were created


def test_a_record_another_process_commits_is_sent_at_once(app, syslog_receiver, database_url):
    """A record committed by another process on the database (`wfm reconcile run`, a second server)
    wakes this server's sender by NOTIFY: it arrives long before the sender's 60 s safety net."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serves one process")
    app.wakeups.listening.wait(10)
    other = AuditTrail(make_engine(database_url), app.settings)  # another process's trail: its own engine
    before = len(syslog_receiver.messages)
    other.record_now(application_activity(started=False))
    syslog_receiver.wait_for(lambda msgs: any(e[:2] == ("110100", "110121") for e in events(msgs[before:])), timeout=10)
    other.engine.dispose()
