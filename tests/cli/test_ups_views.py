"""`wfm ups show` and `wfm ups list`, run as a user runs them, against a real server's database (SQLite
and PostgreSQL): show prints exactly what N-GET returns, server-managed Input Information included;
list shows times readably, and ISO 8601 with --json."""

from __future__ import annotations

import json
import time

import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS

from testkit.cli import wfm
from testkit.ian import association, instance_item, make_ian, send
from testkit.mpps import completed, in_progress
from testkit.ups import PUSH, get, ups_association, workitem
from workflow.dimse.nodelay import NoDelayAE

pytestmark = pytest.mark.slow


def create(port: int, **attributes) -> str:
    uid = generate_uid()
    with ups_association(port) as assoc:
        status, _ = assoc.send_n_create(workitem(**attributes), PUSH, uid)
    assert status.Status in (0x0000, 0xB300)
    return uid


def n_get(port: int, uid: str):
    with ups_association(port) as assoc:
        status, ds = assoc.send_n_get([], PUSH, uid, meta_uid="1.2.840.10008.5.1.4.34.6.3")
    assert status.Status == 0
    return ds


@pytest.fixture(scope="module")
def ready_workitem(server):
    """A workitem the server made READY itself: its Input Information lives in workitem_input rows
    (two series of a study performed by an MPPS and announced by IANs)."""
    port = server.dicom.port
    study_uid = generate_uid()
    series = {generate_uid(): [generate_uid(), generate_uid()] for _ in range(2)}
    uid = create(port, StudyInstanceUID=study_uid, InputReadinessState="INCOMPLETE")
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
    pps_uid = generate_uid()
    assert assoc.send_n_create(in_progress(study_uid), MPPS, pps_uid)[0].Status == 0
    assert assoc.send_n_set(completed(series), MPPS, pps_uid)[0].Status == 0
    assoc.release()
    for series_uid, sops in series.items():
        with association(port, calling_ae="ARCHIVE") as a:
            assert send(a, make_ian(study_uid, {series_uid: [instance_item(s, ae=("PACS",)) for s in sops]}))[0].Status == 0
    deadline = time.monotonic() + 15
    while True:
        with ups_association(port) as a:
            status, ds = get(a, uid, "InputReadinessState")
        if ds.InputReadinessState == "READY":
            return uid, series
        assert time.monotonic() < deadline, "the workitem never became READY"
        time.sleep(0.05)


def test_ups_show_json_is_what_n_get_returns(server, database_url, ready_workitem):
    uid, series = ready_workitem
    done = wfm("ups", "show", uid, "--json", env={"WFM_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown == n_get(server.dicom.port, uid).to_json_dict()
    listed = {ref["00081155"]["Value"][0] for item in shown["00404021"]["Value"] for ref in item["00081199"]["Value"]}
    assert listed == {sop for sops in series.values() for sop in sops}


def test_ups_show_text_shows_nested_items(database_url, ready_workitem):
    uid, series = ready_workitem
    done = wfm("ups", "show", uid, env={"WFM_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "InputInformationSequence (0040,4021) SQ: 2 items" in text
    assert "Array of" not in text
    lines = text.splitlines()
    for sops in series.values():
        for sop in sops:
            line = next(line for line in lines if sop in line)
            assert line.startswith("        ReferencedSOPInstanceUID (0008,1155) UI: "), line  # an item in an item
    assert "ProcedureStepState (0074,1000) CS: SCHEDULED" in lines
    assert "InputReadinessState (0040,4041) CS: READY" in lines


def test_ups_show_unknown_workitem(server, database_url):
    done = wfm("ups", "show", "1.2.3.999", env={"WFM_DATABASE_URL": database_url})
    assert done.returncode == 1
    assert done.stderr.strip() == "unknown workitem: 1.2.3.999"


def test_ups_list_readable_times_and_iso_json(server, database_url):
    port = server.dicom.port
    with_offset = create(port, ScheduledProcedureStepStartDateTime="20261205143000+0100")
    as_given = create(port, ScheduledProcedureStepStartDateTime="20261206091500")
    env = {"WFM_DATABASE_URL": database_url, "TZ": "America/New_York"}

    rows = {r["sop_instance_uid"]: r for r in json.loads(wfm("ups", "list", "--json", env=env).stdout)}
    assert rows[with_offset]["scheduled_start_datetime"] == "2026-12-05T14:30:00+01:00"
    assert rows[as_given]["scheduled_start_datetime"] == "2026-12-06T09:15:00"

    text = wfm("ups", "list", env=env).stdout.splitlines()
    assert "START" in text[0]
    assert "2026-12-05 08:30" in next(line for line in text if with_offset in line)  # 13:30 UTC in New York
    assert "2026-12-06 09:15" in next(line for line in text if as_given in line)
    assert not any("20261205" in line for line in text)
