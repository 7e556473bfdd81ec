"""The Storage SCP for Inventory Storage (an archive's C-MOVE sub-operations), over real
associations on SQLite and PostgreSQL: kept as received, committed before Success, taken once."""

from __future__ import annotations

import pytest

from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from workflow.reconcile.dimse.sop_classes import INVENTORY_STORAGE
from workflow.dimse.nodelay import NoDelayAE
from workflow.reconcile import received as received_inventories

pytestmark = pytest.mark.slow


def inventory_instance() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = INVENTORY_STORAGE, generate_uid()
    ds.InventoryLevel, ds.InventoryCompletionStatus = "STUDY", "COMPLETE"
    study = Dataset()
    study.StudyInstanceUID = generate_uid()
    study.NumberOfStudyRelatedInstances = 3
    ds.InventoriedStudiesSequence = [study]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_inventory_instances_are_kept_as_received_and_taken_once(server):
    ae = NoDelayAE(ae_title="PACS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(INVENTORY_STORAGE, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", server.dicom.port, ae_title="WFM")
    assert assoc.is_established
    try:
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        assert INVENTORY_STORAGE in accepted and str(CTImageStorage) not in accepted  # not an image archive
        sent = inventory_instance()
        assert assoc.send_c_store(sent).Status == 0x0000
    finally:
        assoc.release()
    assert sent.SOPInstanceUID in received_inventories.present(server.engine)
    syntax, data = received_inventories.take(server.engine, sent.SOPInstanceUID)
    assert syntax == str(ExplicitVRLittleEndian)
    got = dcmread(BytesIO(data), force=True)  # the data set exactly as the archive encoded it
    assert got.InventoriedStudiesSequence[0].StudyInstanceUID == sent.InventoriedStudiesSequence[0].StudyInstanceUID
    assert received_inventories.take(server.engine, sent.SOPInstanceUID) is None  # taken once
    assert received_inventories.wait(server.engine, sent.SOPInstanceUID, timeout=0.1) is None


def test_instances_no_reconciliation_took_are_purged_after_a_day(server):
    from datetime import timedelta

    from sqlalchemy import update

    from workflow.kernel.clock import utcnow
    from workflow.reconcile.received import UNTAKEN_KEPT as UNTAKEN_INVENTORY_KEPT
    from workflow.reconcile.inventory_tables import ReceivedInventory

    ae = NoDelayAE(ae_title="PACS")
    ae.add_requested_context(INVENTORY_STORAGE, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", server.dicom.port, ae_title="WFM")
    try:
        orphan, fresh = inventory_instance(), inventory_instance()
        assert assoc.send_c_store(orphan).Status == 0x0000 and assoc.send_c_store(fresh).Status == 0x0000
    finally:
        assoc.release()
    table = ReceivedInventory.__table__
    with server.engine.begin() as conn:  # as if its reconciliation had died two days ago
        conn.execute(update(table).where(table.c.sop_instance_uid == orphan.SOPInstanceUID)
                     .values(received_at=utcnow() - UNTAKEN_INVENTORY_KEPT - timedelta(hours=1)))
    assert server.purge()[1] == 1
    present = received_inventories.present(server.engine)
    assert orphan.SOPInstanceUID not in present and fresh.SOPInstanceUID in present
