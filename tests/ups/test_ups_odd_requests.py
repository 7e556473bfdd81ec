"""Odd but well-formed UPS requests a tester found answered wrongly: arguments whose values are not text,
N-GET lists naming nothing a workitem can return, a C-FIND identifier with only the Transaction UID.

Over real associations to a real server on 127.0.0.1 (SQLite and PostgreSQL), each request must be
answered at once with its precise status, and nothing logged at ERROR. The DIMSE requests run with a
5 s DIMSE timeout: an answer the requester waits for in vain fails the test instead of hanging it."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid
from pynetdicom import evt
from sqlalchemy import func, select

from testkit.ups import GLOBAL, PULL, PUSH, QUERY, WATCH, claim, workitem
from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import release
from workflow.ups.tables import Workitem

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Invalid value for VR")]

TIMEOUT = 5.0  # seconds a response may take before the requester gives up
NO_DATA_SET = 0x0101  # Command Data Set Type (0000,0800) of a message without a data set (PS3.7 6.3.1)
TXN = 0x00081195


@pytest.fixture(scope="module")
def ups(server):
    return server  # the module's server (tests/conftest.py)


class Received:
    """The command sets of the DIMSE messages the requester receives."""

    def __init__(self) -> None:
        self.commands: list[Dataset] = []

    def __call__(self, event) -> None:
        self.commands.append(event.message.command_set)

    def last_data_set_type(self) -> int:
        return int(self.commands[-1].CommandDataSetType)


@contextmanager
def association(port: int):
    ae = NoDelayAE(ae_title="ODDSCU")
    for context in (PUSH, PULL, WATCH, QUERY):
        ae.add_requested_context(context)
    ae.acse_timeout = ae.network_timeout = 20
    ae.dimse_timeout = TIMEOUT
    received = Received()
    assoc = ae.associate("127.0.0.1", port, ae_title="WFM", evt_handlers=[(evt.EVT_DIMSE_RECV, received)])
    assert assoc.is_established
    assoc.received = received
    try:
        yield assoc
    finally:
        release(assoc)


@pytest.fixture
def assoc(ups):
    with association(ups.dicom.port) as a:
        yield a


@pytest.fixture
def logged(caplog):
    caplog.set_level(logging.INFO)
    return caplog


def errors(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def create(assoc) -> str:
    uid = generate_uid()
    status, _ = assoc.send_n_create(workitem(), PUSH, uid)
    assert status.Status == 0x0000, status
    return uid


def state_of(ups, uid: str) -> str:
    return ups.worklist.get(uid, ["00741000"]).dataset["00741000"]["Value"][0]


# ---------------------------------------------------------------- 1: argument values that are not text
#
# A face's decoder hands the service DICOM JSON; an element sent with a VR other than the dictionary's
# decodes to a number (US) or a person name object (PN). The service takes such a value for an invalid
# one. (The DIMSE decoder may refuse those data sets before the service sees them; these requests go to
# the running server's service directly, with what the decoder produced.)

US_5 = {"vr": "US", "Value": [5]}
PN_TRUE = {"vr": "PN", "Value": [{"Alphabetic": "TRUE"}]}


def _ui(uid: str) -> dict:
    return {"vr": "UI", "Value": [uid]}


def _cs(text: str) -> dict:
    return {"vr": "CS", "Value": [text]}


@pytest.mark.parametrize("state", [US_5, {"vr": "PN", "Value": [{"Alphabetic": "IN PROGRESS"}]}],
                         ids=["US", "PN"])
def test_change_state_to_a_state_that_is_not_text_is_0115(ups, assoc, state):
    uid = create(assoc)
    outcome = ups.worklist.change_state(uid, {"00081195": _ui(generate_uid()), "00741000": state})
    assert outcome.status.code == 0x0115
    assert state_of(ups, uid) == "SCHEDULED"


def test_change_state_with_a_transaction_uid_that_is_not_text_is_c301(ups, assoc):
    uid = create(assoc)
    outcome = ups.worklist.change_state(uid, {"00081195": US_5, "00741000": _cs("IN PROGRESS")})
    assert outcome.status.code == 0xC301
    status, txn = claim(assoc, uid)
    assert status.Status == 0x0000
    outcome = ups.worklist.change_state(uid, {"00081195": {"vr": "US", "Value": [7]}, "00741000": _cs("CANCELED")})
    assert outcome.status.code == 0xC301
    assert state_of(ups, uid) == "IN PROGRESS"


def test_n_set_with_a_transaction_uid_that_is_not_text(ups, assoc):
    """SCHEDULED: a Transaction UID is given (C310, as with any value); IN PROGRESS: not the lock (C301)."""
    uid = create(assoc)
    label = {"vr": "LO", "Value": ["new"]}
    assert ups.worklist.set(uid, {"00081195": US_5, "00741204": label}).status.code == 0xC310
    claim(assoc, uid)
    assert ups.worklist.set(uid, {"00081195": US_5, "00741204": label}).status.code == 0xC301
    assert ups.worklist.get(uid, ["00741204"]).dataset["00741204"]["Value"] == ["CT head review"]


@pytest.mark.parametrize("info,offending", [
    ({"00741230": {"vr": "LO", "Value": ["FALSE"]}, "00741234": US_5}, "00741234"),  # Receiving AE as US
    ({"00741230": PN_TRUE, "00741234": {"vr": "AE", "Value": ["SUB"]}}, "00741230"),  # Deletion Lock as PN
    ({"00741230": US_5, "00741234": {"vr": "AE", "Value": ["SUB"]}}, "00741230"),  # Deletion Lock as US
], ids=["receiving-ae-US", "deletion-lock-PN", "deletion-lock-US"])
def test_subscribe_with_an_argument_that_is_not_text_is_0115(ups, assoc, info, offending):
    uid = create(assoc)
    outcome = ups.worklist.subscribe(uid, info)
    assert (outcome.status.code, outcome.tags) == (0x0115, (offending,))


def test_unsubscribe_and_suspend_with_a_receiving_ae_that_is_not_text_are_0115(ups, assoc):
    uid = create(assoc)
    outcome = ups.worklist.unsubscribe(uid, {"00741234": US_5})
    assert (outcome.status.code, outcome.tags) == (0x0115, ("00741234",))
    assert "not an AE title" in outcome.comment
    outcome = ups.worklist.suspend(GLOBAL, {"00741234": PN_TRUE})
    assert (outcome.status.code, outcome.tags) == (0x0115, ("00741234",))


# ---------------------------------------------------------------- 2: N-GET of nothing returnable

@pytest.mark.parametrize("tags", [
    [TXN],  # never returned (CC.2.7.3)
    [0x00000900],  # command group
    [0x00100000],  # a group length: pydicom writes none
    [0x00020010],  # file meta
    [0xFFFEE000],  # item
    [0xFFFEE0DD],  # sequence delimitation item
    [0xFFFFFFFF],  # a group out of use (PS3.5 7.8.1)
    [TXN, 0xFFFEE000, 0x00100000],
], ids=["transaction-uid", "status", "group-length", "file-meta", "item", "sequence-delimiter", "group-ffff",
        "all"])
def test_n_get_of_nothing_returnable_is_answered_at_once_without_a_data_set(assoc, logged, tags):
    uid = create(assoc)
    started = time.monotonic()
    status, ds = assoc.send_n_get(tags, PUSH, uid)
    assert time.monotonic() - started < TIMEOUT
    assert "Status" in status, "no response: the requester waited for a data set that never came"
    assert status.Status == 0x0000
    assert assoc.received.last_data_set_type() == NO_DATA_SET
    assert not ds
    assert assoc.is_established
    assert errors(logged) == []


def test_n_get_leaves_out_what_it_cannot_return(assoc, logged):
    uid = create(assoc)
    status, ds = assoc.send_n_get([0x00100010, TXN, 0xFFFEE000, 0x00100000], PUSH, uid)
    assert status.Status == 0x0000
    assert [elem.keyword for elem in ds] == ["PatientName"] and ds.PatientName == "Doe^Jane"
    assert errors(logged) == []


# ---------------------------------------------------------------- 3: C-FIND with only the Transaction UID

def test_c_find_with_only_the_transaction_uid_gets_a_pending_response_per_match(ups, assoc, logged):
    create(assoc)
    claimed = create(assoc)
    claim(assoc, claimed)
    query = Dataset()
    query.TransactionUID = ""
    started = time.monotonic()
    responses = list(assoc.send_c_find(query, QUERY))
    assert time.monotonic() - started < TIMEOUT
    statuses = [r[0].Status for r in responses if "Status" in r[0]]
    assert len(statuses) == len(responses), "a response never came"
    assert statuses[-1] == 0x0000 and set(statuses[:-1]) == {0xFF00}
    with ups.engine.connect() as conn:
        assert len(statuses) - 1 == conn.execute(select(func.count()).select_from(Workitem)).scalar()
    for _, identifier in responses[:-1]:  # the lock is never disclosed: the key comes back empty
        assert [elem.tag for elem in identifier] == [TXN] and identifier.TransactionUID in ("", None)
    assert errors(logged) == []
    assert any(r.getMessage().startswith("UPS C-FIND: ") and r.getMessage().endswith(f"({len(statuses) - 1} matches)")
               for r in logged.records)


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.34.5", "1.2.840.10008.5.1.4.34.5.1"])
def test_n_create_for_a_worklist_uid_is_0106(ups, assoc, uid):
    """PS3.4 CC.3.1: the (Filtered) Worklist's well-known UIDs are never a workitem's, on either face."""
    status, _ = assoc.send_n_create(workitem(), PUSH, uid)
    assert status.Status == 0x0106 and "reserved" in status.ErrorComment
    with ups.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Workitem).where(Workitem.sop_instance_uid == uid)
                            ).scalar_one() == 0


@contextmanager
def sent_as(assoc, bad_uid: str):
    """The requester's next request goes out with `bad_uid` as its SOP Instance UID, past pynetdicom's own
    check of the UIDs it sends (the server's check is the one under test)."""
    send = assoc.dimse.send_msg

    def send_msg(primitive, context_id):
        for attribute in ("_requested_sop_instance_uid", "_affected_sop_instance_uid"):
            if getattr(primitive, attribute, None):
                setattr(primitive, attribute, UID(bad_uid))
        return send(primitive, context_id)

    assoc.dimse.send_msg = send_msg
    try:
        yield
    finally:
        assoc.dimse.send_msg = send


# Over 64 characters: pynetdicom's decoder refuses them. (A UID of up to 64 characters that breaks the
# construction rules reaches the service: N-CREATE answers 0106, the others find no such workitem.)
TOO_LONG = ["1.2." + "3" * 61, "1.2.840.10008." + "9" * 86]


@pytest.mark.parametrize("bad_uid", TOO_LONG)
@pytest.mark.parametrize("request_kind", ["N-CREATE", "N-SET", "N-GET", "N-ACTION"])
def test_a_sop_instance_uid_over_64_characters_is_0117(ups, assoc, logged, request_kind, bad_uid):
    """PS3.7 Annex C.4.2: Invalid SOP Instance. pynetdicom refused to build such a request: it logged its own
    traceback and aborted the association. Now it is answered, and the association goes on."""
    before = workitems(ups)
    uid = create(assoc)
    txn = generate_uid()
    info = Dataset()
    info.ProcedureStepState, info.TransactionUID = "IN PROGRESS", txn
    with sent_as(assoc, bad_uid):
        if request_kind == "N-CREATE":
            status, _ = assoc.send_n_create(workitem(), PUSH, generate_uid())
        elif request_kind == "N-SET":
            status, _ = assoc.send_n_set(workitem(), PUSH, uid)
        elif request_kind == "N-GET":
            status, _ = assoc.send_n_get([0x00741000], PUSH, uid)
        else:
            status, _ = assoc.send_n_action(info, 1, PUSH, uid, meta_uid=PULL)
    assert status.Status == 0x0117
    assert assoc.send_n_get([0x00741000], PUSH, uid)[0].Status == 0  # the association goes on
    assert workitems(ups) == before + 1 and state_of(ups, uid) == "SCHEDULED"  # only `create`'s workitem
    assert errors(logged) == []
    assert [r.getMessage() for r in logged.records if r.name in ("pydicom", "py.warnings")] == []  # ours only
    assert any(bad_uid in r.getMessage() and "0117" in r.getMessage() for r in logged.records
               if r.name == "workflow.dimse" and r.levelno == logging.WARNING)


def workitems(ups) -> int:
    with ups.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Workitem)).scalar_one()
