"""`wfm db check`, run as an administrator runs it after an upgrade, against a real server's database
(SQLite and PostgreSQL): what the server stored through its own faces passes; data sets an older
version stored and today's checks refuse (a VR the attribute does not allow, a number where text
belongs, a date that does not exist) are listed, one per line or as JSON, with exit status 1; nothing
is changed."""

from __future__ import annotations

import json

import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS
from sqlalchemy import select, update

from testkit.cli import wfm
from testkit.ian import association, instance_item, make_ian, send
from testkit.mpps import completed, in_progress
from testkit.ups import PUSH, ups_association, workitem
from workflow.dimse.nodelay import NoDelayAE
from workflow.ian.tables import Notification
from workflow.mpps.tables import PerformedStep
from workflow.ups.tables import Workitem

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stored(server):
    """One workitem, one MPPS (created and completed) and one IAN, each through the DICOM face."""
    port = server.dicom.port
    workitem_uid, study_uid, pps_uid = generate_uid(), generate_uid(), generate_uid()
    with ups_association(port) as assoc:
        assert assoc.send_n_create(workitem(StudyInstanceUID=study_uid), PUSH, workitem_uid)[0].Status == 0
    series = {generate_uid(): [generate_uid()]}
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
    assert assoc.send_n_create(in_progress(study_uid), MPPS, pps_uid)[0].Status == 0
    assert assoc.send_n_set(completed(series), MPPS, pps_uid)[0].Status == 0
    assoc.release()
    ian = make_ian(study_uid, {s: [instance_item(i, ae=("PACS",)) for i in sops] for s, sops in series.items()})
    with association(port, calling_ae="ARCHIVE") as a:
        assert send(a, ian)[0].Status == 0
    with server.engine.connect() as conn:
        ian_uid = conn.execute(select(Notification.sop_instance_uid)).scalar_one()
    return workitem_uid, pps_uid, ian_uid


def check(database_url: str, *more: str):
    return wfm("db", "check", *more, env={"WFM_DATABASE_URL": database_url})


def edit(server, table, uid: str, change) -> str:
    """Rewrite a stored data set as an older version could have stored it; returns the original."""
    with server.engine.begin() as conn:
        original = conn.execute(select(table.c.dataset_json).where(table.c.sop_instance_uid == uid)).scalar_one()
        ds = json.loads(original)
        change(ds)
        conn.execute(update(table).where(table.c.sop_instance_uid == uid).values(dataset_json=json.dumps(ds)))
    return original


def test_what_the_server_stored_passes(database_url, stored):
    done = check(database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no stored data set that today's checks would refuse" in done.stdout


def test_data_sets_refused_today_are_listed_and_left_as_they_are(server, database_url, stored):
    workitem_uid, pps_uid, ian_uid = stored
    tables = (Workitem.__table__, PerformedStep.__table__, Notification.__table__)
    originals = [
        edit(server, tables[0], workitem_uid,
             lambda ds: ds.update({"00741204": {"vr": "US", "Value": [7]}})),  # Procedure Step Label as US
        edit(server, tables[1], pps_uid,
             lambda ds: ds.update({"00400244": {"vr": "DA", "Value": ["20261340"]}})),  # a 13th month
        edit(server, tables[2], ian_uid,
             lambda ds: ds.update({"00100020": {"vr": "LO", "Value": [12345]}})),  # a number for text
    ]
    try:
        done = check(database_url, "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        found = {(f["kind"], f["uid"]): f["problem"] for f in json.loads(done.stdout)}
        assert set(found) == {("workitem", workitem_uid), ("MPPS", pps_uid), ("IAN", ian_uid)}
        assert "00741204: VR US is not the attribute's" in found[("workitem", workitem_uid)]
        assert "00400244: '20261340' is not a DA value that exists" in found[("MPPS", pps_uid)]
        assert "00100020: LO values are strings, not 12345" in found[("IAN", ian_uid)]
        text = check(database_url)
        assert text.returncode == 1 and workitem_uid in text.stdout and "PROBLEM" in text.stdout
        with server.engine.connect() as conn:  # nothing changed
            assert json.loads(conn.execute(select(tables[0].c.dataset_json).where(
                tables[0].c.sop_instance_uid == workitem_uid)).scalar_one())["00741204"]["vr"] == "US"
    finally:
        for table, uid, original in zip(tables, (workitem_uid, pps_uid, ian_uid), originals):
            with server.engine.begin() as conn:
                conn.execute(update(table).where(table.c.sop_instance_uid == uid).values(dataset_json=original))
    assert check(database_url).returncode == 0
