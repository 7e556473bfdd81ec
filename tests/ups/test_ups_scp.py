"""The UPS SCP over real associations on 127.0.0.1, against SQLite and PostgreSQL, with real Event
SCPs as subscribers."""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select

from testkit.db import test_settings
from testkit.ups import (FILTERED, GLOBAL, PULL, PUSH, QUERY, WATCH, EventReceiver, action, claim, code, final_state_requirements, get, ups_association, workitem)
from workflow.app import App
from workflow.config import RemoteAE
from workflow.ups.tables import Workitem

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Invalid value for VR")]


@pytest.fixture(scope="module")
def subscribers():
    receivers = {name: EventReceiver(name).start() for name in ("SUB1", "SUB2", "SUB3")}
    yield receivers
    for receiver in receivers.values():
        receiver.stop()


@pytest.fixture(scope="module")
def ups(database_url, subscribers):
    remotes = tuple(RemoteAE(name, "127.0.0.1", r.port, status_change=(name == "SUB3"))
                    for name, r in subscribers.items())
    app = App(test_settings(database_url, remote_ae=remotes, event_retry_initial=0.1,
                            event_retry_max_interval=0.5))
    app.start()
    yield app
    app.stop()


@pytest.fixture
def assoc(ups):
    with ups_association(ups.dicom.port) as a:
        yield a


def create(assoc, **overrides) -> str:
    uid = generate_uid()
    status, _ = assoc.send_n_create(workitem(**overrides), PUSH, uid)
    assert status.Status == 0x0000, status
    return uid


def state_of(assoc, uid) -> str | None:
    status, ds = get(assoc, uid, "ProcedureStepState")
    return ds.ProcedureStepState if status.Status == 0 else None


def test_scp_status_change_reaches_the_marked_remote_ae(ups, subscribers):
    report = subscribers["SUB3"].wait(lambda r: r.event_type == 4 and r.info.SCPStatus == "RESTARTED")
    assert report.info.SubscriptionListStatus == "WARM START"
    assert report.uid == GLOBAL


def test_scp_status_change_on_shutdown(database_url):
    receiver = EventReceiver("WATCHER").start()
    try:
        app = App(test_settings(database_url, remote_ae=(RemoteAE("WATCHER", "127.0.0.1", receiver.port,
                                                                  status_change=True),)))
        app.start()
        receiver.wait(lambda r: r.event_type == 4 and r.info.SCPStatus == "RESTARTED")
        app.stop()
        receiver.wait(lambda r: r.event_type == 4 and r.info.SCPStatus == "GOING DOWN", timeout=5)
    finally:
        receiver.stop()


def test_create_and_get(assoc):
    uid = create(assoc)
    status, ds = get(assoc, uid)
    assert status.Status == 0
    assert ds.ProcedureStepState == "SCHEDULED"
    assert ds.ProcedureStepLabel == "CT head review"
    assert ds.ScheduledStationNameCodeSequence[0].CodeValue == "STATION1"
    assert ds.SOPInstanceUID == uid
    assert "TransactionUID" not in ds
    status, ds = get(assoc, uid, "InputReadinessState", "TransactionUID")
    assert status.Status == 0 and ds.InputReadinessState == "READY" and "TransactionUID" not in ds


def test_create_duplicate_is_0111(assoc):
    uid = create(assoc)
    status, _ = assoc.send_n_create(workitem(), PUSH, uid)
    assert status.Status == 0x0111


def test_create_coerces_worklist_label_with_b300(assoc, ups):
    uid = generate_uid()
    status, _ = assoc.send_n_create(workitem(WorklistLabel=None), PUSH, uid)
    assert status.Status == 0xB300
    _, ds = get(assoc, uid, "WorklistLabel", "ScheduledProcedureStepModificationDateTime")
    assert ds.WorklistLabel == ups.settings.default_worklist_label
    assert ds.ScheduledProcedureStepModificationDateTime


def test_create_without_uid_gets_one_assigned(assoc, ups):
    label = f"assigned-{generate_uid()[-12:]}"
    status, _ = assoc.send_n_create(workitem(ProcedureStepLabel=label), PUSH, None)
    assert status.Status == 0
    with ups.engine.connect() as conn:
        uids = conn.execute(select(Workitem.sop_instance_uid).where(Workitem.procedure_step_label == label)).all()
    assert len(uids) == 1


@pytest.mark.parametrize("overrides,expected", [
    ({"ProcedureStepState": "IN PROGRESS"}, 0xC309),
    ({"ScheduledProcedureStepPriority": ...}, 0x0120),
    ({"ProcedureStepLabel": None}, 0x0121),
    ({"ScheduledProcedureStepPriority": "URGENT"}, 0x0106),
    ({"InputReadinessState": "MAYBE"}, 0x0106),
], ids=["state in progress", "priority missing", "label empty", "bad priority", "bad readiness"])
def test_create_validation(assoc, overrides, expected):
    uid = generate_uid()
    status, _ = assoc.send_n_create(workitem(**overrides), PUSH, uid)
    assert status.Status == expected, status
    assert state_of(assoc, uid) is None  # nothing stored


def test_create_with_transaction_uid_is_refused(assoc):
    uid = generate_uid()
    status, _ = assoc.send_n_create(workitem(TransactionUID=generate_uid()), PUSH, uid)
    assert status.Status != 0 and status.Status >> 12 != 0xB
    assert state_of(assoc, uid) is None


def test_get_unknown_is_c307(assoc):
    status, _ = get(assoc, generate_uid())
    assert status.Status == 0xC307


# ------------------------------------------------------------------------------- the state table

def _in_state(assoc, state: str) -> tuple[str | None, str | None]:
    """A workitem in `state` ("none" for an unknown UID) and its Transaction UID."""
    if state == "none":
        return generate_uid(), None
    uid = create(assoc)
    if state == "SCHEDULED":
        return uid, None
    status, txn = claim(assoc, uid)
    assert status.Status == 0
    if state == "IN PROGRESS":
        return uid, txn
    _complete_requirements(assoc, uid, txn)
    final = action(assoc, uid, 1, PULL, ProcedureStepState=state, TransactionUID=txn)
    assert final.Status == 0, final
    return uid, txn


def _complete_requirements(assoc, uid, txn):
    """Fill what COMPLETED and CANCELED need (Table CC.2.5-3 Final State P/X rows)."""
    mod = final_state_requirements(cancellation_datetime="20261123091000")
    mod.TransactionUID = txn
    status, _ = assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)
    assert status.Status == 0, status


# Event -> {current state: (status, state after)}; PS3.4 Table CC.1.1-2, written out independently.
TABLE = {
    "to IN PROGRESS, right txn": {"none": (0xC307, None), "SCHEDULED": (0x0000, "IN PROGRESS"),
                                  "IN PROGRESS": (0xC302, "IN PROGRESS"), "COMPLETED": (0xC300, "COMPLETED"),
                                  "CANCELED": (0xC300, "CANCELED")},
    "to IN PROGRESS, no txn": {"none": (0xC307, None), "SCHEDULED": (0xC301, "SCHEDULED"),
                               "IN PROGRESS": (0xC301, "IN PROGRESS"), "COMPLETED": (0xC301, "COMPLETED"),
                               "CANCELED": (0xC301, "CANCELED")},
    "to SCHEDULED": {"none": (0xC307, None), "SCHEDULED": (0xC303, "SCHEDULED"),
                     "IN PROGRESS": (0xC303, "IN PROGRESS"), "COMPLETED": (0xC303, "COMPLETED"),
                     "CANCELED": (0xC303, "CANCELED")},
    "to COMPLETED, right txn": {"none": (0xC307, None), "SCHEDULED": (0xC310, "SCHEDULED"),
                                "IN PROGRESS": (0x0000, "COMPLETED"), "COMPLETED": (0xB306, "COMPLETED"),
                                "CANCELED": (0xC300, "CANCELED")},
    "to CANCELED, right txn": {"none": (0xC307, None), "SCHEDULED": (0xC310, "SCHEDULED"),
                               "IN PROGRESS": (0x0000, "CANCELED"), "COMPLETED": (0xC300, "COMPLETED"),
                               "CANCELED": (0xB304, "CANCELED")},
    "to COMPLETED, wrong txn": {"none": (0xC307, None), "SCHEDULED": (0xC301, "SCHEDULED"),
                                "IN PROGRESS": (0xC301, "IN PROGRESS"), "COMPLETED": (0xC301, "COMPLETED"),
                                "CANCELED": (0xC301, "CANCELED")},
    "request cancel": {"none": (0xC307, None), "SCHEDULED": (0x0000, "CANCELED"),
                       "IN PROGRESS": (0x0000, "IN PROGRESS"), "COMPLETED": (0xC311, "COMPLETED"),
                       "CANCELED": (0xB304, "CANCELED")},
}
CELLS = [(event, state) for event, row in TABLE.items() for state in row]


@pytest.mark.parametrize("event,state", CELLS, ids=[f"{e} / {s}" for e, s in CELLS])
def test_state_table_cell(assoc, event, state):
    uid, txn = _in_state(assoc, state)
    if state == "IN PROGRESS":
        _complete_requirements(assoc, uid, txn)
    if event == "to IN PROGRESS, right txn":
        status = action(assoc, uid, 1, PULL, ProcedureStepState="IN PROGRESS", TransactionUID=txn or generate_uid())
    elif event == "to IN PROGRESS, no txn":
        status = action(assoc, uid, 1, PULL, ProcedureStepState="IN PROGRESS")
    elif event == "to SCHEDULED":
        status = action(assoc, uid, 1, PULL, ProcedureStepState="SCHEDULED", TransactionUID=txn or generate_uid())
    elif event.startswith("to COMPLETED") or event.startswith("to CANCELED"):
        target = "COMPLETED" if "COMPLETED" in event else "CANCELED"
        if "right" in event:
            status = action(assoc, uid, 1, PULL, ProcedureStepState=target, TransactionUID=txn or generate_uid())
        elif txn:
            status = action(assoc, uid, 1, PULL, ProcedureStepState=target, TransactionUID=generate_uid())
        else:  # nothing is locked yet: the only wrong Transaction UID is none at all
            status = action(assoc, uid, 1, PULL, ProcedureStepState=target)
    else:
        status = action(assoc, uid, 2, WATCH, ReasonForCancellation="no longer needed")
    expected_status, expected_state = TABLE[event][state]
    assert status.Status == expected_status, status
    assert state_of(assoc, uid) == expected_state


def test_completion_needs_final_state_requirements(assoc):
    uid = create(assoc)
    _, txn = claim(assoc, uid)
    status = action(assoc, uid, 1, PULL, ProcedureStepState="COMPLETED", TransactionUID=txn)
    assert status.Status == 0xC304
    assert state_of(assoc, uid) == "IN PROGRESS"


# ------------------------------------------------------------------------------- N-SET

def test_n_set_rules(assoc):
    uid = create(assoc)
    mod = Dataset()
    mod.ProcedureStepLabel = "changed while scheduled"
    assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0
    _, txn = claim(assoc, uid)
    mod.ProcedureStepLabel = "changed without the lock"
    assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0xC301
    mod.TransactionUID = generate_uid()
    assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0xC301
    mod.TransactionUID = txn
    mod.ProcedureStepLabel = "changed with the lock"
    assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0
    assert get(assoc, uid, "ProcedureStepLabel")[1].ProcedureStepLabel == "changed with the lock"
    state = Dataset()
    state.TransactionUID = txn
    state.ProcedureStepState = "COMPLETED"
    assert assoc.send_n_set(state, PUSH, uid, meta_uid=PULL)[0].Status != 0  # state only via N-ACTION
    assert state_of(assoc, uid) == "IN PROGRESS"


def test_n_set_replaces_sequences_whole(assoc):
    uid = create(assoc, ScheduledStationNameCodeSequence=[code("A"), code("B")])
    mod = Dataset()
    mod.ScheduledStationNameCodeSequence = [code("C")]
    assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0
    seq = get(assoc, uid, "ScheduledStationNameCodeSequence")[1].ScheduledStationNameCodeSequence
    assert [item.CodeValue for item in seq] == ["C"]


def test_n_set_on_final_is_c300(assoc):
    uid, txn = _in_state(assoc, "CANCELED")
    mod = Dataset()
    mod.TransactionUID = txn
    mod.ProcedureStepLabel = "too late"
    assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0xC300


# ------------------------------------------------------------------------------- C-FIND

def find(assoc, model=QUERY, **keys) -> list[Dataset]:
    identifier = Dataset()
    for key, value in keys.items():
        setattr(identifier, key, value)
    out = []
    for status, ds in assoc.send_c_find(identifier, model):
        assert status.Status in (0xFF00, 0xFF01, 0x0000), status
        if status.Status in (0xFF00, 0xFF01):
            out.append(ds)
    return out


def test_find_matches_any_item_of_a_sequence(assoc):
    label = f"seq-{generate_uid()[-10:]}"
    second = create(assoc, WorklistLabel=label, ScheduledStationNameCodeSequence=[code("CT1"), code("CT2")])
    create(assoc, WorklistLabel=label, ScheduledStationNameCodeSequence=[code("MR1")])
    key = Dataset()
    key.CodeValue = "CT2"
    key.CodingSchemeDesignator = "99WFM"
    found = find(assoc, WorklistLabel=label, ScheduledStationNameCodeSequence=[key], SOPInstanceUID=None,
                 ProcedureStepState=None, TransactionUID=None)
    assert [ds.SOPInstanceUID for ds in found] == [second]
    assert found[0].ProcedureStepState == "SCHEDULED"
    assert "TransactionUID" not in found[0] or not found[0].TransactionUID


def test_find_wildcards_ranges_and_lists(assoc):
    label = f"rng-{generate_uid()[-10:]}"
    early = create(assoc, WorklistLabel=label, ScheduledProcedureStepStartDateTime="20261123080000",
                   PatientName="Smith^Anna")
    late = create(assoc, WorklistLabel=label, ScheduledProcedureStepStartDateTime="20261124120000",
                  PatientName="Jones^Bob")
    uids = lambda found: sorted(ds.SOPInstanceUID for ds in found)  # noqa: E731
    assert uids(find(assoc, WorklistLabel=label, SOPInstanceUID=None,
                     ScheduledProcedureStepStartDateTime="20261124-")) == [late]
    assert uids(find(assoc, WorklistLabel=label, SOPInstanceUID=None,
                     ScheduledProcedureStepStartDateTime="-20261123235959")) == [early]
    assert uids(find(assoc, WorklistLabel=label, SOPInstanceUID=None, PatientName="SMI*")) == [early]
    assert uids(find(assoc, WorklistLabel=label[:-1] + "?", SOPInstanceUID=None)) == sorted([early, late])
    assert uids(find(assoc, SOPInstanceUID=[early, late])) == sorted([early, late])
    assert uids(find(assoc, WorklistLabel=label, SOPInstanceUID=None, InputReadinessState="INCOMPLETE")) == []


def test_find_on_pull_and_watch_contexts(assoc):
    label = f"ctx-{generate_uid()[-10:]}"
    uid = create(assoc, WorklistLabel=label)
    for model in (PULL, WATCH, QUERY):
        assert [ds.SOPInstanceUID for ds in find(assoc, model, WorklistLabel=label, SOPInstanceUID=None)] == [uid]


def test_find_rejects_a_malformed_range(assoc):
    identifier = Dataset()
    identifier.ScheduledProcedureStepStartDateTime = "2026-11-23-x"
    statuses = [status.Status for status, _ in assoc.send_c_find(identifier, QUERY)]
    assert statuses == [0xA900]


# ------------------------------------------------------------------------------- subscriptions and events

def test_subscribe_unknown_receiving_ae_is_c308(assoc):
    uid = create(assoc)
    status = action(assoc, uid, 3, ReceivingAE="NOBODY", DeletionLock="FALSE")
    assert status.Status == 0xC308


def test_workitem_subscription_gets_initial_and_later_state_reports(assoc, subscribers):
    sub = subscribers["SUB1"]
    uid = create(assoc)
    assert action(assoc, uid, 3, ReceivingAE="SUB1", DeletionLock="FALSE").Status == 0
    first = sub.wait(lambda r: r.uid == uid and r.event_type == 1)
    assert first.info.ProcedureStepState == "SCHEDULED" and first.info.InputReadinessState == "READY"
    _, txn = claim(assoc, uid)
    report = sub.wait(lambda r: r.uid == uid and r.event_type == 1)
    assert report.info.ProcedureStepState == "IN PROGRESS"
    assert report.calling_ae == "WFM"


def test_request_cancel_of_scheduled_reports_in_progress_then_canceled(assoc, subscribers):
    sub = subscribers["SUB1"]
    uid = create(assoc)
    action(assoc, uid, 3, ReceivingAE="SUB1", DeletionLock="FALSE")
    sub.wait(lambda r: r.uid == uid)
    assert action(assoc, uid, 2, WATCH, ReasonForCancellation="patient left").Status == 0
    states = [sub.wait(lambda r: r.uid == uid and r.event_type == 1).info.ProcedureStepState for _ in range(2)]
    assert states == ["IN PROGRESS", "CANCELED"]
    _, ds = get(assoc, uid, "ProcedureStepProgressInformationSequence")
    progress = ds.ProcedureStepProgressInformationSequence[0]
    assert progress.ProcedureStepCancellationDateTime and progress.ReasonForCancellation == "patient left"


def test_request_cancel_of_in_progress_tells_subscribers(assoc, subscribers):
    sub = subscribers["SUB1"]
    uid = create(assoc)
    action(assoc, uid, 3, ReceivingAE="SUB1", DeletionLock="FALSE")
    claim(assoc, uid)
    assert action(assoc, uid, 2, WATCH, ReasonForCancellation="stop please").Status == 0
    report = sub.wait(lambda r: r.uid == uid and r.event_type == 2)
    assert report.info.RequestingAE == "SCHEDULER"
    assert report.info.ReasonForCancellation == "stop please"
    assert state_of(assoc, uid) == "IN PROGRESS"


def test_global_and_filtered_subscriptions(assoc, subscribers):
    assert action(assoc, GLOBAL, 3, ReceivingAE="SUB2", DeletionLock="FALSE").Status == 0
    uid = create(assoc)
    assert subscribers["SUB2"].wait(lambda r: r.uid == uid).info.ProcedureStepState == "SCHEDULED"
    # Unsubscribe from the global subscription: new workitems are no longer reported.
    assert action(assoc, GLOBAL, 4, ReceivingAE="SUB2").Status == 0
    label = f"flt-{generate_uid()[-10:]}"
    status = action(assoc, FILTERED, 3, ReceivingAE="SUB2", DeletionLock="FALSE", WorklistLabel=label)
    assert status.Status == 0
    other = create(assoc)
    wanted = create(assoc, WorklistLabel=label)
    assert subscribers["SUB2"].wait(lambda r: r.uid == wanted).info.ProcedureStepState == "SCHEDULED"
    assert all(r.uid != other for r in subscribers["SUB2"].drain())
    action(assoc, FILTERED, 4, ReceivingAE="SUB2")


def test_suspended_global_subscription_keeps_existing_workitems(assoc, subscribers):
    sub = subscribers["SUB2"]
    assert action(assoc, GLOBAL, 3, ReceivingAE="SUB2", DeletionLock="FALSE").Status == 0
    before = create(assoc)
    sub.wait(lambda r: r.uid == before)
    assert action(assoc, GLOBAL, 5, ReceivingAE="SUB2").Status == 0
    after = create(assoc)
    claim(assoc, before)
    assert sub.wait(lambda r: r.uid == before and r.event_type == 1).info.ProcedureStepState == "IN PROGRESS"
    assert all(r.uid != after for r in sub.drain())
    action(assoc, GLOBAL, 4, ReceivingAE="SUB2")


def test_events_wait_for_a_subscriber_that_is_down_and_arrive_in_order(assoc, subscribers, ups):
    sub = subscribers["SUB1"]
    uid = create(assoc)
    action(assoc, uid, 3, ReceivingAE="SUB1", DeletionLock="FALSE")
    sub.wait(lambda r: r.uid == uid)
    sub.stop()
    try:
        _, txn = claim(assoc, uid)
        _complete_requirements(assoc, uid, txn)
        assert action(assoc, uid, 1, PULL, ProcedureStepState="COMPLETED", TransactionUID=txn).Status == 0
        # Wait until a delivery attempt failed and is recorded.
        deadline = __import__("time").monotonic() + 10
        while __import__("time").monotonic() < deadline:
            owed = [e for e in ups.outbox.listing() if e["workitem_uid"] == uid]
            if owed and owed[0]["attempts"] >= 1:
                break
        assert owed and owed[0]["status"] == "PENDING" and owed[0]["last_error"]
        assert owed[0]["subscriber"] == "SUB1"
    finally:
        sub.start()
    states = [sub.wait(lambda r: r.uid == uid and r.event_type == 1, timeout=20).info.ProcedureStepState
              for _ in range(2)]
    assert states == ["IN PROGRESS", "COMPLETED"]


# ------------------------------------------------------------------------------- the race

def test_two_performers_race_and_exactly_one_wins_each(ups):
    with ups_association(ups.dicom.port) as a:
        uids = [create(a) for _ in range(20)]
    wins: dict[str, list[str]] = {"A": [], "B": []}

    def performer(name):
        with ups_association(ups.dicom.port, calling_ae=f"PERF{name}") as a:
            for uid in uids:
                if claim(a, uid)[0].Status == 0:
                    wins[name].append(uid)

    threads = [threading.Thread(target=performer, args=(n,)) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins["A"] + wins["B"]) == sorted(uids)
    assert not set(wins["A"]) & set(wins["B"])
