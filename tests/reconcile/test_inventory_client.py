"""The Inventory path client (workflow.reconcile.dimse.inventory_client) over real associations on 127.0.0.1
with the reference archive: existing inventories found and used, new ones requested and followed,
trees retrieved by C-GET and C-MOVE, and every way it can go wrong."""

from __future__ import annotations

import socket
from datetime import date, timedelta

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from testkit.refarchive import action, scu

from refarchive import ReferenceArchive, Scope
from workflow.reconcile.dimse.inventory_client import InventoryHoldings
from workflow.reconcile.dimse.inventory_receiver import StorageReceiver
from workflow.reconcile.dimse.peer import ArchiveError
from workflow.reconcile.dimse.sop_classes import INVENTORY_FIND
from workflow.reconcile.rules.holdings import Holding
from workflow.reconcile.rules.scope import HoldingsScope, scope_covers, scope_item

LOCAL_AE = "WFM"


ARCHIVE = dict(record_limit=3, fanout=2, status_minute=0.2)


@pytest.fixture(scope="module")
def receiver(archive, tmp_path_factory):
    with StorageReceiver(LOCAL_AE, tmp_path_factory.mktemp("received")) as r:
        archive.move_destinations[LOCAL_AE] = ("127.0.0.1", r.port)
        yield r


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("archive_faults_reset")]


@pytest.fixture
def messages() -> list[str]:
    return []


@pytest.fixture
def make_client(archive, receiver, tmp_path, messages):
    def make(retrieve: str = "get", **options) -> InventoryHoldings:
        options.setdefault("poll_after", 2.0)
        return InventoryHoldings(options.pop("local_ae", LOCAL_AE), "REFARCH", "127.0.0.1",
                                 options.pop("port", archive.port), options.pop("timeout", 5.0), directory=tmp_path,
                                 retrieve=retrieve, receiver=receiver if retrieve == "move" else None,
                                 progress=messages.append, **options)

    return make


def archive_holdings(archive, study_uids: list[str]) -> set[Holding]:
    """What the archive holds, as the Inventory should say it (its seeds are all ONLINE CT)."""
    out = set()
    for study in study_uids:
        rows = archive.holdings.query(
            "SELECT i.sop_instance_uid FROM instances i JOIN series se ON i.series = se.id "
            "JOIN studies st ON se.study = st.id WHERE st.study_uid = ?", (study,))
        for (uid,) in rows:
            inst = archive.holdings.instance(uid)
            aes = archive.holdings.query(
                "SELECT DISTINCT i.retrieve_ae FROM instances i JOIN series se ON i.series = se.id "
                "JOIN studies st ON se.study = st.id WHERE st.study_uid = ? ORDER BY 1", (study,))
            out.add(Holding(study, inst["series_uid"], uid, inst["sop_class_uid"], inst["availability"],
                            "\\".join(a for (a,) in aes), inst["retrieve_url"],
                            bool(inst["study_removed"] or inst["series_removed"] or inst["instance_removed"])))
    return out


def leftovers(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


# -- an inventory that exists ----------------------------------------------------------------------


@pytest.mark.parametrize("retrieve", ["get", "move"])
def test_existing_complete_inventory_is_found_and_used(archive, make_client, retrieve, tmp_path):
    seeded = archive.holdings.seed(7, 2, 3)
    archive.holdings.mark_removed(series=seeded.series_uid(2, 1))
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids))
    transactions = len(archive.creation.transactions)
    inventory = make_client(retrieve).fetch(HoldingsScope(study_uids=seeded.study_uids[2:5]))
    try:
        assert not inventory.created and inventory.complete and not inventory.partial
        assert inventory.root_uid == built.root_uid
        assert sorted(n.sop_uid for n in inventory.nodes) == sorted(built.instance_uids) and len(inventory.nodes) > 3
        assert inventory.total_records == 7 and inventory.content_datetime is not None
        assert set(inventory.holdings()) == archive_holdings(archive, seeded.study_uids)
        assert sorted(inventory.study_uids()) == sorted(seeded.study_uids)
        assert len(archive.creation.transactions) == transactions  # nothing requested
    finally:
        inventory.remove_files()
    if retrieve == "get":
        assert leftovers(tmp_path) == []


def test_unusable_inventories_are_passed_over(archive, make_client, messages):
    seeded = archive.holdings.seed(4, 1, 2)
    uids = seeded.study_uids
    archive.build_inventory("STUDY", scope=Scope(study_uids=uids))  # wrong level
    archive.build_inventory("INSTANCE", scope=Scope(study_uids=uids), completion="PARTIAL", max_studies=2)
    archive.build_inventory("INSTANCE", scope=Scope(study_uids=uids[:3]))  # does not cover
    old = archive.build_inventory("INSTANCE", scope=Scope(study_uids=uids))
    archive.holdings.query("UPDATE inventories SET content_date = ? WHERE root_uid = ?",
                           ((date.today() - timedelta(days=2)).strftime("%Y%m%d"), old.root_uid))
    inventory = make_client().fetch(HoldingsScope(study_uids=uids))
    try:
        assert inventory.created and inventory.complete
        assert sorted(inventory.study_uids()) == sorted(uids)
        tx = archive.creation.transactions[inventory.transaction_uid]
        assert tx.request.level == "INSTANCE" and tx.request.scope == Scope(study_uids=uids)
        assert "0 recent COMPLETE INSTANCE-level Inventory(ies) cover the scope" in messages
    finally:
        inventory.remove_files()


def test_max_age(archive, make_client):
    seeded = archive.holdings.seed(2)
    archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids))
    archive.holdings.query("UPDATE inventories SET content_time = '000000', content_date = ? "
                           "WHERE level = 'INSTANCE'", ((date.today() - timedelta(days=1)).strftime("%Y%m%d"),))
    client = make_client(max_age=timedelta(hours=1))
    assert client.find_recent(HoldingsScope(study_uids=seeded.study_uids)) == []
    assert len(make_client(max_age=timedelta(days=3)).find_recent(HoldingsScope(study_uids=seeded.study_uids))) >= 1


# -- an inventory requested now ----------------------------------------------------------------------


@pytest.mark.parametrize("retrieve", ["get", "move"])
def test_created_inventory_split_over_several_instances(archive, make_client, messages, retrieve, tmp_path):
    seeded = archive.holdings.seed(9, 2, 2)
    archive.holdings.set_availability("NEARLINE", instance=seeded.instance_uid(1, 0, 1))
    archive.holdings.mark_removed(instance=seeded.instance_uid(3, 1, 0))
    archive.holdings.set_retrieve(ae_title="OTHER", instance=seeded.instance_uid(4, 0, 0))
    inventory = make_client(retrieve).fetch(HoldingsScope(study_uids=seeded.study_uids))
    try:
        assert inventory.created and inventory.complete and inventory.transaction_status == "COMPLETE"
        assert len(inventory.nodes) >= 5  # 3 leaves of 3 records, index nodes, a root
        assert inventory.root.incorporated_uids() and inventory.root.transaction_uid == inventory.transaction_uid
        held = set(inventory.holdings())
        assert held == archive_holdings(archive, seeded.study_uids) and len(held) == 36
        by_uid = {h.sop_uid: h for h in held}
        assert by_uid[seeded.instance_uid(1, 0, 1)].availability == "NEARLINE"
        assert by_uid[seeded.instance_uid(3, 1, 0)].removed
        counts = {s.study_uid: s.counts() for s in inventory.studies()}
        assert {(c.series_count, c.instance_count) for c in counts.values()} == {(2, 4)}
    finally:
        inventory.remove_files()
    assert any(m.startswith("requested an Inventory") for m in messages)
    assert any(m.startswith("retrieved ") for m in messages)
    if retrieve == "get":
        assert leftovers(tmp_path) == []


def test_scope_is_sent_and_a_covering_inventory_reused(archive, make_client):
    since = date(2020, 6, 1)
    inventory = make_client().fetch(HoldingsScope(since=since, modalities=["mr", "CT"]))
    inventory.remove_files()
    tx = archive.creation.transactions[inventory.transaction_uid]
    assert tx.request.scope == Scope(study_date=("20200601", ""), modalities=["MR", "CT"])
    # a narrower scope is covered by it (FIND returns its Scope of Inventory)
    again = make_client().fetch(HoldingsScope(since=since + timedelta(days=10), modalities=["CT"]))
    again.remove_files()
    assert not again.created and again.root_uid == inventory.root_uid


def test_implicit_vr_transfer(archive, make_client):
    seeded = archive.holdings.seed(3, 1, 2)
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids))
    inventory = make_client(transfer_syntaxes=[str(ImplicitVRLittleEndian)]).retrieve(built.root_uid)
    try:
        assert {n.transfer_syntax for n in inventory.nodes} == {str(ImplicitVRLittleEndian)}
        assert set(inventory.holdings()) == archive_holdings(archive, seeded.study_uids)
    finally:
        inventory.remove_files()


# -- honesty about completion ----------------------------------------------------------------------


def test_partial_inventory_is_returned_flagged(archive, make_client):
    seeded = archive.holdings.seed(6, 1, 1)
    archive.faults.creation_partial_after = 4
    inventory = make_client().fetch(HoldingsScope(study_uids=seeded.study_uids))
    try:
        assert inventory.partial and not inventory.complete and inventory.completion == "PARTIAL"
        assert inventory.transaction_status == "FAILURE" and "PARTIAL" in inventory.transaction_comment
        assert sorted(inventory.study_uids()) == sorted(seeded.study_uids)[:4]
    finally:
        inventory.remove_files()


def test_failed_production_raises(archive, make_client, tmp_path):
    seeded = archive.holdings.seed(5)
    archive.faults.creation_fail_after = 2
    with pytest.raises(ArchiveError, match="ended FAILURE without an inventory: injected failure"):
        make_client().fetch(HoldingsScope(study_uids=seeded.study_uids))
    assert leftovers(tmp_path) == []


def test_canceled_production_raises(archive, make_client):
    """An operator cancels: the end goes to their association, so only a status request tells us."""
    seeded = archive.holdings.seed(30)
    archive.faults.creation_study_delay = 0.02
    canceled = []
    with scu(archive.port, calling_ae="OPERATOR") as operator:  # open until the end: it gets the events

        def cancel_once(message: str) -> None:
            if "PROCESSING" in message and not canceled:
                (tx,) = [t for t in archive.creation.transactions.values() if t.status == "PROCESSING"]
                canceled.append(action(operator.assoc, 13, tx.uid, RetainInstances="Y").Status)

        client = make_client(poll_after=0.3)
        client.progress = cancel_once
        with pytest.raises(ArchiveError, match="Inventory production was canceled: canceled at the SCU's request"):
            client.fetch(HoldingsScope(study_uids=seeded.study_uids))
        assert canceled == [0x0000]
        assert operator.until_terminated()[-1][1].TransactionStatus == "CANCELED"


def test_event_association_dropped_then_reconnect_and_poll(archive, make_client, messages):
    seeded = archive.holdings.seed(3, 1, 2)
    archive.abort_after(0)  # the archive aborts instead of sending its first event
    inventory = make_client(poll_after=30).create(HoldingsScope(study_uids=seeded.study_uids))
    try:
        assert inventory.complete and sorted(inventory.study_uids()) == sorted(seeded.study_uids)
        # whether the abort overtook the N-ACTION response or not, the client asked
        assert any("asking" in m for m in messages)
    finally:
        inventory.remove_files()


def test_archive_forgetting_the_transaction_raises(archive, make_client):
    """As after a restart: the association drops and the status request names an unknown transaction."""
    seeded = archive.holdings.seed(20)
    archive.faults.creation_study_delay = 0.02

    def forget(message: str) -> None:
        if "PROCESSING" in message and not archive.faults.armed:
            archive.creation.transactions.clear()
            archive.abort_after(0)  # instead of the next status event

    client = make_client(poll_after=30)
    client.progress = forget
    with pytest.raises(ArchiveError, match="status request refused: 0x0110 \\(unknown Transaction UID\\)"):
        client.create(HoldingsScope(study_uids=seeded.study_uids))


def test_abort_mid_retrieval_raises(archive, make_client, tmp_path):
    seeded = archive.holdings.seed(5)
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids), record_limit=1, fanout=10)
    archive.abort_after(1)  # the root goes, then the archive aborts the C-GET of the leaves
    with pytest.raises(ArchiveError, match="aborted"):
        make_client().retrieve(built.root_uid)
    assert leftovers(tmp_path) == []


def test_abort_mid_move_raises(archive, make_client):
    seeded = archive.holdings.seed(5)
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids), record_limit=1, fanout=10)
    archive.abort_after(2)
    with pytest.raises(ArchiveError, match="aborted"):
        make_client("move").retrieve(built.root_uid)


def test_a_node_the_archive_no_longer_has_raises(archive, make_client, tmp_path):
    seeded = archive.holdings.seed(4)
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids), record_limit=1, fanout=10)
    archive.inventories.delete([built.instance_uids[-1]])
    with pytest.raises(ArchiveError, match=f"0xB000.*{built.instance_uids[-1]}"):
        make_client().retrieve(built.root_uid)
    assert leftovers(tmp_path) == []


def test_wrong_level_and_inconsistent_tree_raise(archive, make_client, tmp_path):
    seeded = archive.holdings.seed(4)
    study_level = archive.build_inventory("STUDY", scope=Scope(study_uids=seeded.study_uids))
    with pytest.raises(ArchiveError, match="at STUDY level, not INSTANCE"):
        make_client().retrieve(study_level.root_uid)
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids))
    lying = archive.inventories.dataset(built.root_uid)
    lying.SOPInstanceUID = lying.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    lying.TotalNumberOfStudyRecords = 5  # one more than its tree holds
    with scu(archive.port) as peer:
        assert peer.assoc.send_c_store(lying).Status == 0x0000
    with pytest.raises(ArchiveError, match="holds 4 study records where its root says 5"):
        make_client().retrieve(lying.SOPInstanceUID)
    assert leftovers(tmp_path) == []


def test_no_inventory_find_goes_straight_to_creation(make_client, messages):
    with ReferenceArchive(ae_title="REFARCH") as other:
        server = other._server  # an archive without Inventory FIND: its listener stops offering it
        server.contexts = [cx for cx in server.contexts if cx.abstract_syntax != INVENTORY_FIND]
        seeded = other.holdings.seed(2)
        inventory = make_client(port=other.port).fetch(HoldingsScope(study_uids=seeded.study_uids))
        inventory.remove_files()
    assert inventory.created and inventory.complete
    assert any("does not accept Inventory FIND" in m for m in messages)


def test_unknown_move_destination_raises(archive, make_client):
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=archive.holdings.seed(1).study_uids))
    with pytest.raises(ArchiveError, match="does not know Move Destination NOBODY"):
        make_client("move", local_ae="NOBODY").retrieve(built.root_uid)


def test_not_listening_raises(make_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ArchiveError, match="REFARCH at 127.0.0.1"):
        make_client(port=port, timeout=2).fetch()


# -- scope -----------------------------------------------------------------------------------------


def _item(**keys) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _uid_list(*uids) -> Dataset:
    return _item(ListOfUIDMatchingSequence=[_item(StudyInstanceUID=u) for u in uids])


def _range(low: str, high: str = "") -> Dataset:
    return _item(RangeMatchingSequence=[_item(StudyDate=low), _item(StudyDate=high)])


@pytest.mark.parametrize("theirs, ours, covers", [
    ([], HoldingsScope(), True),
    (None, HoldingsScope(), False),  # scope not returned: unknown
    ([_uid_list("1.1", "1.2", "1.3")], HoldingsScope(study_uids=["1.1", "1.3"]), True),
    ([_uid_list("1.1", "1.2")], HoldingsScope(study_uids=["1.1", "1.4"]), False),
    ([_uid_list("1.1")], HoldingsScope(), False),
    ([_item(GeneralMatchingSequence=[_item(StudyInstanceUID="1.1")])], HoldingsScope(study_uids=["1.1"]), True),
    ([_range("20240101")], HoldingsScope(since=date(2024, 2, 1)), True),
    ([_range("20240101")], HoldingsScope(since=date(2023, 2, 1)), False),
    ([_range("20240101", "20240301")], HoldingsScope(since=date(2024, 2, 1)), False),  # closed range
    ([_range("20240101")], HoldingsScope(study_uids=["1.1"]), False),
    ([_item(GeneralMatchingSequence=[_item(ModalitiesInStudy=["CT", "MR"])])],
     HoldingsScope(modalities=["ct"], since=date(2024, 1, 1)), True),
    ([_item(GeneralMatchingSequence=[_item(ModalitiesInStudy="CT")])], HoldingsScope(modalities=["MR"]), False),
    ([_item(GeneralMatchingSequence=[_item(PatientID="P1")])], HoldingsScope(study_uids=["1.1"]), False),
    ([_item(GeneralMatchingSequence=[_item(PatientID="")])], HoldingsScope(), True),  # empty: universal
    ([_item(ExtendedMatchingMechanisms="RELATIONAL")], HoldingsScope(), False),
    ([_item(), _item()], HoldingsScope(), False),
])
def test_scope_covers(theirs, ours, covers):
    assert scope_covers(theirs, ours) is covers


def test_scope_item_round_trips_through_the_archive_parser():
    scope = HoldingsScope(since=date(2024, 3, 4), modalities=["CT", "MR"], study_uids=["1.2.3", "1.2.4"])
    parsed, unsupported = Scope.from_sequence([scope_item(scope)])
    assert unsupported == []
    assert parsed == Scope(study_uids=["1.2.3", "1.2.4"], study_date=("20240304", ""), modalities=["CT", "MR"])
    assert scope_covers([scope_item(scope)], scope)
    assert scope_item(HoldingsScope()) is None
