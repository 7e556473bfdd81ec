"""The MPPS SCP over real associations, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS
from sqlalchemy import select

from workflow.dimse import response_fields  # noqa: F401
from workflow.dimse.nodelay import NoDelayAE
from testkit.mpps import completed, in_progress
from workflow.mpps.tables import PerformedStep, PerformedStepInstance, PerformedStepRequest

pytestmark = pytest.mark.slow


@pytest.fixture
def assoc(server):
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(MPPS)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    a = ae.associate("127.0.0.1", server.dicom.port, ae_title="WFM")
    assert a.is_established
    yield a
    a.release()


def test_mpps_lifecycle_records_the_expected_instances(assoc, server):
    study, uid = generate_uid(), generate_uid()
    status, _ = assoc.send_n_create(in_progress(study), MPPS, uid)
    assert status.Status == 0
    update = Dataset()
    update.PerformedProcedureStepDescription = "CT head without contrast"
    assert assoc.send_n_set(update, MPPS, uid)[0].Status == 0
    expected = {generate_uid(): [generate_uid() for _ in range(3)], generate_uid(): [generate_uid()]}
    assert assoc.send_n_set(completed(expected), MPPS, uid)[0].Status == 0
    with server.engine.connect() as conn:
        step = conn.execute(select(PerformedStep).where(PerformedStep.sop_instance_uid == uid)).one()
        instances = conn.execute(select(PerformedStepInstance.sop_instance_uid)
                                 .where(PerformedStepInstance.performed_step_uid == uid)).scalars().all()
        request = conn.execute(select(PerformedStepRequest).where(PerformedStepRequest.performed_step_uid == uid)).one()
    assert step.status == "COMPLETED" and step.calling_ae_title == "CT1"
    assert sorted(instances) == sorted(sum(expected.values(), []))
    assert (request.study_instance_uid, request.accession_number) == (study, "ACC1")
    again = Dataset()
    again.PerformedProcedureStepDescription = "too late"
    status, _ = assoc.send_n_set(again, MPPS, uid)
    assert status.Status == 0x0110 and status.ErrorID == 0xA710


def test_mpps_refusals(assoc):
    uid = generate_uid()
    bad = in_progress(generate_uid())
    bad.PerformedProcedureStepStatus = "COMPLETED"
    assert assoc.send_n_create(bad, MPPS, uid)[0].Status == 0x0106
    missing = in_progress(generate_uid())
    del missing.PerformedProcedureStepID
    assert assoc.send_n_create(missing, MPPS, uid)[0].Status == 0x0120
    assert assoc.send_n_create(in_progress(generate_uid()), MPPS, uid)[0].Status == 0
    assert assoc.send_n_create(in_progress(generate_uid()), MPPS, uid)[0].Status == 0x0111
    update = Dataset()
    update.PerformedProcedureStepDescription = "x"
    assert assoc.send_n_set(update, MPPS, generate_uid())[0].Status == 0x0112
    not_allowed = Dataset()
    not_allowed.PatientID = "OTHER"
    assert assoc.send_n_set(not_allowed, MPPS, uid)[0].Status == 0x0105
    early = Dataset()
    early.PerformedProcedureStepStatus = "COMPLETED"
    status, _ = assoc.send_n_set(early, MPPS, uid)
    assert status.Status == 0x0121  # final state requirements (end date/time, performed series) unmet


def test_each_refusal_says_why_in_its_error_comment(assoc):
    """The Error Comment names the rule broken, not the state table's cell ("failure 0106")."""
    uid = generate_uid()
    assert assoc.send_n_create(in_progress(generate_uid()), MPPS, uid)[0].Status == 0
    cases = []
    done = Dataset()
    done.PerformedProcedureStepStatus = "DONE"
    cases.append((uid, done, 0x0106, "PerformedProcedureStepStatus"))
    update = Dataset()
    update.PerformedProcedureStepDescription = "x"
    cases.append((generate_uid(), update, 0x0112, "No such SOP Instance"))
    early = Dataset()
    early.PerformedProcedureStepStatus = "COMPLETED"
    cases.append((uid, early, 0x0121, "missing for COMPLETED"))
    for target, modification, code, named in cases:
        status, _ = assoc.send_n_set(modification, MPPS, target)
        assert status.Status == code and named in status.ErrorComment, (code, status.get("ErrorComment"))
        assert not status.ErrorComment.startswith("failure")
    assert assoc.send_n_set(completed({generate_uid(): [generate_uid()]}), MPPS, uid)[0].Status == 0
    status, _ = assoc.send_n_set(update, MPPS, uid)
    assert status.Status == 0x0110 and status.ErrorID == 0xA710
    assert status.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    status, _ = assoc.send_n_create(in_progress(generate_uid()), MPPS, uid)
    assert status.Status == 0x0111 and "failure" not in status.ErrorComment
