"""Per-AE rights (`[[client_ae]]`) and the limits that keep one peer from hurting the others, over real
associations: an AE not listed, or from a host it may not come from, is rejected at association; the
contexts of SOP classes an AE has no right to are rejected (user rejection) while the others are
accepted; a request outside its rights is refused with 0124 (C-FIND included: a refusal, never an empty
success), and each refusal is a Security Alert; associations per AE and per address are capped, to exactly
the limit when many arrive at once; an oversized data set aborts its association and nothing of it is
stored."""

from __future__ import annotations

import threading
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import (InstanceAvailabilityNotification, UnifiedProcedureStepPull,
                                  UnifiedProcedureStepPush, Verification)
from sqlalchemy import func, select

from testkit.audit import security_alerts
from testkit.http import http_app
from testkit.ian import instance_item, make_ian
from testkit.ups import workitem
from workflow.config import ClientAE
from workflow.dimse.nodelay import NoDelayAE
from workflow.ian.tables import Notification

pytestmark = pytest.mark.slow

CLIENTS = (
    ClientAE("MODALITY", ("notify",)),
    ClientAE("SCHEDULER", ("schedule", "query")),
    ClientAE("PERFORMER", ("perform",)),
    ClientAE("FAR", ("notify",), ("10.1.0.0/16",)),
    ClientAE("NEAR", ("notify",), ("127.0.0.1",)),
)


@pytest.fixture(scope="module")
def app(database_url, syslog_receiver):
    with http_app(database_url, client_ae=CLIENTS, audit_repository=f"tcp://127.0.0.1:{syslog_receiver.port}",
                  max_associations_per_ae=2, max_dataset_bytes=20_000) as app:
        yield app


def associate(app, calling: str, *contexts: str):
    ae = NoDelayAE(ae_title=calling)
    for context in contexts:
        ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", app.dicom.port, ae_title="WFM")


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_an_ae_not_listed_is_rejected_and_alerted(app, syslog_receiver):
    assoc = associate(app, "STRANGER", Verification)
    assert assoc.is_rejected
    assert security_alerts(syslog_receiver, "'STRANGER' is not listed")


def test_hosts_limit_where_an_ae_may_come_from(app):
    assert associate(app, "FAR", Verification).is_rejected
    near = associate(app, "NEAR", Verification)
    assert near.is_established
    near.release()


def test_contexts_without_a_right_are_rejected_the_others_accepted(app):
    assoc = associate(app, "MODALITY", InstanceAvailabilityNotification, UnifiedProcedureStepPush, Verification)
    assert assoc.is_established
    try:
        accepted = {str(c.abstract_syntax) for c in assoc.accepted_contexts}
        rejected = {str(c.abstract_syntax): c.result for c in assoc.rejected_contexts}
        assert accepted == {InstanceAvailabilityNotification, Verification}
        assert rejected == {UnifiedProcedureStepPush: 0x01}  # user rejection
        assert assoc.send_c_echo().Status == 0  # Verification is open to every listed AE
        status, _ = assoc.send_n_create(make_ian(), InstanceAvailabilityNotification, generate_uid())
        assert status.Status == 0
    finally:
        assoc.release()


def test_a_request_outside_the_rights_gets_0124_and_an_alert(app, syslog_receiver):
    # SCHEDULER may create and query, not claim; PERFORMER may claim, not create or query.
    uid = generate_uid()
    scheduler = associate(app, "SCHEDULER", UnifiedProcedureStepPush)
    performer = associate(app, "PERFORMER", UnifiedProcedureStepPush, UnifiedProcedureStepPull)
    try:
        assert scheduler.send_n_create(workitem(), UnifiedProcedureStepPush, uid)[0].Status == 0
        info = Dataset()
        info.ProcedureStepState, info.TransactionUID = "IN PROGRESS", generate_uid()
        status, _ = scheduler.send_n_action(info, 1, UnifiedProcedureStepPush, uid)
        assert status.Status == 0x0124
        assert performer.send_n_create(workitem(), UnifiedProcedureStepPush, generate_uid())[0].Status == 0x0124
        status, _ = performer.send_n_action(info, 1, UnifiedProcedureStepPush, uid)
        assert status.Status == 0  # claimed by the AE with the right
    finally:
        scheduler.release()
        performer.release()
    assert security_alerts(syslog_receiver, "N-ACTION of")


def test_c_find_outside_the_rights_is_a_refusal_not_an_empty_success(app):
    performer = associate(app, "PERFORMER", UnifiedProcedureStepPull)
    try:
        query = Dataset()
        query.ProcedureStepState = "SCHEDULED"
        answers = [status.Status for status, _ in performer.send_c_find(query, UnifiedProcedureStepPull)]
        assert answers == [0x0124]
    finally:
        performer.release()


def test_associations_per_ae_are_capped(app):
    first, second = associate(app, "MODALITY", Verification), associate(app, "MODALITY", Verification)
    try:
        assert first.is_established and second.is_established
        third = associate(app, "MODALITY", Verification)
        assert third.is_rejected
        other = associate(app, "NEAR", Verification)  # another AE is not held back
        assert other.is_established
        other.release()
    finally:
        first.release()
        second.release()


@pytest.fixture(scope="module")
def open_app(database_url):
    """Any calling AE, ten associations per address (the default)."""
    with http_app(database_url, max_associations_per_address=10) as app:
        yield app


def simultaneously(app, calling: str, attempts: int) -> list:
    start = threading.Barrier(attempts)
    results = []

    def attempt():
        start.wait()
        results.append(associate(app, calling, Verification))

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.parametrize("limit", ["per AE title", "per address"])
def test_simultaneous_associations_get_exactly_the_places_left(app, open_app, limit):
    """Fifteen requests at once: as many are accepted as the limit allows, not fewer (the address's count
    took in associations still negotiating, some then refused: 9 of 10 places were given) and not more
    (each could find room for one); the places come back once they end."""
    server, calling, places = (app, "MODALITY", 2) if limit == "per AE title" else (open_app, "ANYONE", 10)
    results = simultaneously(server, calling, 15)
    try:
        assert len(results) == 15
        assert sum(a.is_established for a in results) == places
        assert sum(a.is_rejected for a in results) == 15 - places
    finally:
        for assoc in results:
            if assoc.is_established:
                assoc.release()

    def accepted_again() -> bool:
        assoc = associate(server, calling, Verification)
        if assoc.is_established:
            assoc.release()
            return True
        return False

    assert wait_until(accepted_again)


def test_an_oversized_data_set_aborts_its_association_and_stores_nothing(app):
    big = make_ian(series={generate_uid(): [instance_item() for _ in range(400)]})  # ~100 bytes each
    with app.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(Notification)).scalar_one()
    assoc = associate(app, "MODALITY", InstanceAvailabilityNotification)
    assert assoc.is_established
    status, _ = assoc.send_n_create(big, InstanceAvailabilityNotification, generate_uid())
    assert not status or status.Status == 0xA700  # aborted, or refused as it was being aborted
    assert wait_until(lambda: assoc.is_aborted)
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Notification)).scalar_one() == before
    again = associate(app, "MODALITY", InstanceAvailabilityNotification)  # the next one is served at once
    assert again.is_established
    assert again.send_n_create(make_ian(), InstanceAvailabilityNotification, generate_uid())[0].Status == 0
    again.release()
