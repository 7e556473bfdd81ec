"""An Inventory for an archive that cannot make one, end to end against Debian's Orthanc: loaded by
dcmtk's storescu, crawled by `wfm inventory build` (Study Root C-FIND), the inventory served by that
wfm's Inventory Q/R SCP; a second wfm, which received IANs with seeded drift, reconciles against the
first over Inventory FIND and GET (and MOVE) and finds exactly the seeded differences."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from testkit.db import drop_database, new_database_url, test_settings
from testkit.ian import association, instance_item, make_ian, send
from testkit.orthanc import OrthancServer, SeriesSpec, StudySpec, free_port, require_orthanc, write_instances
from workflow.app import App
from workflow.config import RemoteAE

pytestmark = pytest.mark.slow

AET = "ORTHANC"


def config(path: Path, database_url: str, ae_title: str, remotes: dict[str, tuple[int, str]]) -> Path:
    """A wfm configuration file: database, AE title, [[remote_ae]] entries (port, extra TOML)."""
    text = f'database_url = "{database_url}"\nae_title = "{ae_title}"\n'
    for title, (port, extra) in remotes.items():
        text += f'\n[[remote_ae]]\nae_title = "{title}"\nhost = "127.0.0.1"\nport = {port}\n{extra}'
    path.write_text(text)
    return path


def wfm(cfg: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "workflow", *args, "--config", str(cfg)], capture_output=True,
                            text=True, timeout=180)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory, request):
    """Orthanc with four studies; wfm 1 (the inventory maker and Inventory SCP) on `database_url`;
    wfm 2 on a database of its own, told by IANs of three studies, with the seeded drift."""
    require_orthanc()
    tmp = tmp_path_factory.mktemp("inventory")
    admin = request.getfixturevalue("postgres_admin_url") if database_url.startswith("postgresql") else None
    second_url = new_database_url("postgresql" if admin else "sqlite", tmp, admin)
    studies = [StudySpec("INV1", date(2026, 11, 20), [SeriesSpec("CT", 3), SeriesSpec("OT", 2)]),
               StudySpec("INV2", date(2026, 11, 21), [SeriesSpec("CT", 4)]),
               StudySpec("INV3", date(2026, 11, 22), [SeriesSpec("MR", 2)])]
    unannounced = StudySpec("INV4", date(2026, 11, 22), [SeriesSpec("CT", 1)])
    write_instances(tmp / "dicom", studies + [unannounced])
    with OrthancServer(aet=AET) as orthanc:
        orthanc.load(tmp / "dicom")
        second = App(test_settings(second_url, ae_title="WFM2"))
        second.start()
        # Its audit repository is never there: the records wait in the database, where the test reads them.
        first = App(test_settings(database_url, ae_title="WFM1", audit_repository=f"tcp://127.0.0.1:{free_port()}",
                                  remote_ae=(RemoteAE(AET, "127.0.0.1", orthanc.dicom_port),
                                             RemoteAE("WFM2", "127.0.0.1", second.dicom.port))))
        first.start()
        never_stored = generate_uid()
        for study in studies:
            series = {s.uid: [instance_item(sop, ae=(AET,)) for sop in s.sop_uids] for s in study.series}
            if study is studies[2]:
                series[study.series[0].uid].append(instance_item(never_stored, ae=(AET,)))
            with association(second.dicom.port, calling_ae="ARCHIVE", called_ae="WFM2") as assoc:
                assert send(assoc, make_ian(study.uid, series))[0].Status == 0
        deleted = studies[0].series[1].sop_uids[0]
        orthanc.delete_instance(deleted)
        seeded = {("MISSING_IN_ARCHIVE", studies[0].uid, deleted),
                  ("MISSING_IN_ARCHIVE", studies[2].uid, never_stored),
                  ("UNEXPECTED_IN_ARCHIVE", unannounced.uid, unannounced.series[0].sop_uids[0])}
        first_cfg = config(tmp / "first.toml", database_url, "WFM1", {AET: (orthanc.dicom_port, "")})
        # wfm 2 knows the archive as ORTHANC at wfm 1's address: wfm 1 answers for it over Inventory Q/R.
        second_cfg = config(tmp / "second.toml", second_url, "WFM2",
                            {AET: (first.dicom.port, '[remote_ae.reconcile]\nmethod = "inventory"\n')})
        yield {"orthanc": orthanc, "first": first, "second": second, "first_cfg": first_cfg,
               "second_cfg": second_cfg, "seeded": seeded, "studies": studies + [unannounced], "tmp": tmp}
        first.stop()
        second.stop()
    drop_database(second_url, admin)


@pytest.fixture(scope="module")
def built(world):
    """`wfm inventory build ORTHANC` with 2 study records per instance: a tree of several instances."""
    done = wfm(world["first_cfg"], "inventory", "build", AET, "--record-limit", "2")
    root = done.stdout.strip().splitlines()[-1]
    assert "COMPLETE: 4 study records in 3 Inventory instance(s)" in done.stderr
    return root


def findings(cfg: Path, *args: str) -> tuple[dict, set]:
    run = wfm(cfg, "reconcile", "run", AET, *args)
    run_uid = run.stdout.strip().splitlines()[-1]
    report = json.loads(wfm(cfg, "report", "show", run_uid, "--format", "json").stdout)
    return report, {(d["reason"], d["study_instance_uid"], d["sop_instance_uid"]) for d in report["discrepancies"]}


def test_a_second_wfm_reconciles_over_inventory_get_and_finds_exactly_the_seeded_drift(world, built):
    report, found = findings(world["second_cfg"], "--retrieve", "get")
    assert report["status"] == "COMPLETED" and report["method"] == "inventory"
    source = report["scope"]["source"]
    assert (source["inventory_uid"], source["completion_status"]) == (built, "COMPLETE")  # ours, used as found
    assert found == world["seeded"]


def test_the_same_over_inventory_move(world, built):
    report, found = findings(world["second_cfg"], "--retrieve", "move")
    assert report["status"] == "COMPLETED" and found == world["seeded"]


def test_inventory_list_names_the_root(world, built):
    listed = json.loads(wfm(world["first_cfg"], "inventory", "list", "--json").stdout)
    [root] = [r for r in listed if r["sop_instance_uid"] == built]
    assert (root["archive_ae_title"], root["completion"], root["total_records"], root["level"]) == (
        AET, "COMPLETE", 4, "INSTANCE")


def test_the_stored_instances_meet_the_inventory_iod(world, built):
    import io

    from pydicom import dcmread

    from iod_tables import problems, subtree_uids
    from workflow.inventory import store

    engine = world["first"].engine
    root = dcmread(io.BytesIO(store.data(engine, built)))
    nodes = {built} | subtree_uids(root)
    assert len(nodes) == 3
    listed = set()
    for uid in nodes:
        ds = dcmread(io.BytesIO(store.data(engine, uid)))
        assert problems(ds) == [], uid
        listed |= {r.StudyInstanceUID for r in ds.InventoriedStudiesSequence}
        assert {r.RetrieveAETitle for r in ds.InventoriedStudiesSequence} <= {AET}
    assert listed == {s.uid for s in world["studies"]}


def scu(port: int, called: str, *contexts):
    from pynetdicom import AE, build_role
    from pynetdicom.sop_class import InventoryStorage

    ae = AE(ae_title="PROBE")
    for cx in contexts:
        ae.add_requested_context(cx)
    ae.add_requested_context(InventoryStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, ext_neg=[build_role(InventoryStorage, scp_role=True)],
                         evt_handlers=[(__import__("pynetdicom").evt.EVT_C_STORE, lambda event: 0x0000)])
    assert assoc.is_established
    return assoc


def inventory_find(assoc, **keys):
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import InventoryFind

    query = Dataset()
    query.SOPClassUID = "1.2.840.10008.5.1.4.1.1.201.1"
    query.SOPInstanceUID = ""
    query.InventoryCompletionStatus = ""
    query.TotalNumberOfStudyRecords = None
    for k, v in keys.items():
        setattr(query, k, v)
    answers = list(assoc.send_c_find(query, InventoryFind))
    assert answers[-1][0].Status == 0
    return [ident for status, ident in answers if status.Status == 0xFF00]


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # a wild card in a CS key is legal in a query
def test_find_answers_for_the_archive_it_is_called_as(world, built):
    from pynetdicom.sop_class import InventoryFind

    port = world["first"].dicom.port
    for called, expected in ((AET, 3), ("WFM1", 3), ("ELSEWHERE", 0)):
        assoc = scu(port, called, InventoryFind)
        try:
            found = inventory_find(assoc)
        finally:
            assoc.release()
        assert len(found) == expected, called
        assert {f.RetrieveAETitle for f in found} <= {called}
    assoc = scu(port, AET, InventoryFind)
    try:
        [root] = inventory_find(assoc, TotalNumberOfStudyRecords=4, InventoryCompletionStatus="COMPLET?")
        assert root.SOPInstanceUID == built
        assert inventory_find(assoc, TransactionUID="1.2.3") == []
        assert len(inventory_find(assoc, ContentDate="20000101-")) == 3
        assert inventory_find(assoc, ContentDate="-20000101") == []
    finally:
        assoc.release()
    from sqlalchemy import text
    with world["first"].engine.connect() as conn:
        audited = conn.execute(text("SELECT message_xml FROM audit_record WHERE event = 'Query'")).scalars().all()
    assert sum("1.2.840.10008.5.1.4.1.1.201.2" in xml for xml in audited) >= 7  # every Inventory FIND


def test_get_and_move_statuses(world, built):
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import InventoryGet, InventoryMove

    assoc = scu(world["first"].dicom.port, AET, InventoryGet, InventoryMove)
    try:
        def get(**keys):
            ident = Dataset()
            for k, v in keys.items():
                setattr(ident, k, v)
            return list(assoc.send_c_get(ident, InventoryGet))[-1]

        status, ident = get(SOPInstanceUID=built, QueryRetrieveLevel="IMAGE")
        assert status.Status == 0xA900
        status, ident = get(SOPInstanceUID="1.2.3.4")
        assert status.Status == 0xA702 and ident.FailedSOPInstanceUIDList == "1.2.3.4"
        status, ident = get(SOPInstanceUID=[built, "1.2.3.4"])
        assert status.Status == 0xB000 and ident.FailedSOPInstanceUIDList == "1.2.3.4"
        assert status.NumberOfCompletedSuboperations == 1
        status, _ = get(SOPInstanceUID=built)
        assert status.Status == 0x0000 and status.NumberOfCompletedSuboperations == 1
        ident = Dataset()
        ident.SOPInstanceUID = built
        status, _ = list(assoc.send_c_move(ident, "NOBODY", InventoryMove))[-1]
        assert status.Status == 0xA801
    finally:
        assoc.release()
