"""The inventory a finished crawl becomes: its listed studies as INSTANCE-level study records, split
into a tree of Inventory SOP instances, stored in one transaction (an inventory appears whole or not
at all), and the crawl marked DONE with the root's UID.

Completion Status is honest: COMPLETE only when every study in scope was listed; otherwise PARTIAL,
the Inventory Instance Description naming how many and which studies could not be listed (their
instances are in no record, so a consumer must not take them as missing)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import Engine, delete, select, update

from workflow.inventory.crawl import failed_studies, listed_studies
from workflow.inventory.rules.iod import NodeHeader, NodeRef, node_dataset, part10, study_record
from workflow.inventory.rules.tree import build_tree
from workflow.inventory.tables import (DONE, InventoryCrawl as Crawl, InventoryCrawlStudy as CrawlStudy,
                                       InventoryNode as Node)
from workflow.reconcile.rules.scope import HoldingsScope, scope_item

log = logging.getLogger("workflow.inventory")
C, N, S = Crawl.__table__, Node.__table__, CrawlStudy.__table__
NAMED = 20  # studies that could not be listed, named in the description
KEEP = 3  # inventories kept per archive: a consumer retrieving the previous one can finish


@dataclass(frozen=True)
class Built:
    root_uid: str
    nodes: int
    records: int
    completion: str
    description: str


def describe(archive_ae: str, method: str, failed: list[tuple[str, str]]) -> tuple[str, str]:
    """(completion, Inventory Instance Description)."""
    text = f"Holdings of {archive_ae} as listed by {method}."
    if not failed:
        return "COMPLETE", text
    named = ", ".join(uid for uid, _ in failed[:NAMED]) + (" ..." if len(failed) > NAMED else "")
    return "PARTIAL", (f"{text} {len(failed)} studies in scope could not be listed and are in no record: "
                       f"{named} (first reason: {failed[0][1]})")


def produce(engine: Engine, crawl_id: int, archive_ae: str, scope: HoldingsScope, *, method: str,
            record_limit: int, fanout: int = 100, station_name: str = "", retrieve_ae: str = "",
            keep: int = KEEP) -> Built:
    """Store the crawl's inventory; the archive's inventories beyond the newest `keep` and the crawl's
    study rows (now in the inventory) go in the same transaction."""
    with engine.begin() as conn:
        started = conn.execute(select(C.c.started_at).where(C.c.id == crawl_id)).scalar_one()
        started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
        failed = failed_studies(conn, crawl_id)
        completion, description = describe(archive_ae, method, failed)
        item = scope_item(scope)
        header = NodeHeader(started.astimezone(), item, "wfm inventory build", description, completion, station_name)
        scope_json = json.dumps([item.to_json_dict()] if item is not None else [])
        stored: list[str] = []
        records = 0

        def put(own: list[Dataset], children: list[NodeRef]) -> NodeRef:
            uid = generate_uid()
            ds = node_dataset(uid, header, own, children, datetime.now())
            conn.execute(N.insert().values(
                sop_instance_uid=uid, root_uid=uid, archive_ae_title=archive_ae, content_date=ds.ContentDate,
                content_time=ds.ContentTime, purpose=header.purpose, description=description, level="INSTANCE",
                completion=completion, records=len(own), total_records=int(ds.TotalNumberOfStudyRecords),
                scope_json=scope_json, created_at=datetime.now(timezone.utc), data=part10(ds)))
            stored.append(uid)
            return NodeRef(uid, int(ds.TotalNumberOfStudyRecords), children)

        def study_records():
            nonlocal records
            for facts, listed_at in listed_studies(conn, crawl_id):
                if any(s.instances for s in facts.series):  # a study emptied since the list is not held
                    records += 1
                    yield study_record(facts, retrieve_ae or archive_ae, listed_at)

        root = build_tree(study_records(), record_limit, fanout, put)
        conn.execute(update(N).where(N.c.sop_instance_uid.in_(stored)).values(root_uid=root.uid))
        conn.execute(update(C).where(C.c.id == crawl_id).values(status=DONE, finished_at=datetime.now(timezone.utc),
                                                                root_uid=root.uid, comment=description))
        conn.execute(delete(S).where(S.c.crawl_id == crawl_id))
        kept = select(C.c.root_uid).where(C.c.archive_ae_title == archive_ae, C.c.status == DONE,
                                          C.c.root_uid.is_not(None)).order_by(C.c.id.desc()).limit(keep)
        old = conn.execute(select(N.c.sop_instance_uid).where(N.c.archive_ae_title == archive_ae,
                                                              N.c.root_uid.not_in(kept))).scalars().all()
        if old:
            conn.execute(delete(N).where(N.c.sop_instance_uid.in_(old)))
    log.info(f"inventory {root.uid} of {archive_ae}: {records} study records in {len(stored)} instance(s), "
             f"{completion}; {len(old)} instance(s) of older inventories removed")
    return Built(root.uid, len(stored), records, completion, description)
