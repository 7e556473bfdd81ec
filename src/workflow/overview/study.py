"""Use case: what the server knows about a study (instances, their locations, the IANs received)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from workflow.ian.rules.availability import Availability, best_first
from workflow.readiness import procedures as requested_procedures
from workflow.ian.tables import Instance, InstanceLocation, InstancePerformedStep, Notification
from workflow.mpps.tables import PerformedStep, PerformedStepRequest
from workflow.ups.tables import Workitem
from workflow.store.engine import reading


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def study_report(engine: Engine, study_uid: str) -> dict[str, Any] | None:
    """The study as plain data, or None when no IAN ever named it."""
    with reading(engine) as conn:
        instances = conn.execute(
            select(Instance).where(Instance.study_instance_uid == study_uid)
            .order_by(Instance.series_instance_uid, Instance.sop_instance_uid)
        ).all()
        notifications = conn.execute(
            select(Notification.sop_instance_uid, Notification.calling_ae_title, Notification.peer_address,
                   Notification.received_at, Notification.instance_count, Notification.referenced_pps_uid)
            .where(Notification.study_instance_uid == study_uid).order_by(Notification.received_at)
        ).all()
        steps = conn.execute(
            select(PerformedStep.sop_instance_uid, PerformedStep.status, PerformedStepRequest.accession_number,
                   PerformedStepRequest.requested_procedure_id)
            .join(PerformedStepRequest, PerformedStepRequest.performed_step_uid == PerformedStep.sop_instance_uid)
            .where(PerformedStepRequest.study_instance_uid == study_uid).order_by(PerformedStep.created_at)
        ).all()
        workitems = conn.execute(
            select(Workitem.sop_instance_uid, Workitem.procedure_step_state, Workitem.input_readiness_state,
                   Workitem.procedure_step_label)
            .where(Workitem.study_instance_uid == study_uid).order_by(Workitem.created_at)
        ).all()
        procedures = requested_procedures.of_study(conn, study_uid)
        if not instances and not notifications and not steps and not workitems and not procedures:
            return None
        locations = conn.execute(
            select(InstanceLocation, Instance.sop_instance_uid).join(Instance, Instance.id == InstanceLocation.instance_id)
            .where(Instance.study_instance_uid == study_uid)
        ).all()
        links = conn.execute(
            select(InstancePerformedStep.sop_instance_uid, InstancePerformedStep.performed_step_uid)
            .join(Instance, Instance.sop_instance_uid == InstancePerformedStep.sop_instance_uid)
            .where(Instance.study_instance_uid == study_uid)
        ).all()
    by_instance: dict[str, list] = defaultdict(list)
    for loc in locations:
        by_instance[loc.sop_instance_uid].append(loc)
    steps_by_instance: dict[str, list[str]] = defaultdict(list)
    for uid, step in links:
        steps_by_instance[uid].append(step)
    return {
        "study_instance_uid": study_uid,
        "instances": [_instance(i, by_instance[i.sop_instance_uid], steps_by_instance[i.sop_instance_uid])
                      for i in instances],
        "notifications": [
            {"sop_instance_uid": n.sop_instance_uid, "calling_ae_title": n.calling_ae_title,
             "peer_address": n.peer_address, "received_at": _iso(n.received_at),
             "instance_count": n.instance_count, "referenced_pps_uid": n.referenced_pps_uid}
            for n in notifications
        ],
        "requested_procedures": procedures,
        "performed_steps": [{"sop_instance_uid": p.sop_instance_uid, "status": p.status,
                             "accession_number": p.accession_number,
                             "requested_procedure_id": p.requested_procedure_id} for p in steps],
        "workitems": [{"sop_instance_uid": w.sop_instance_uid, "procedure_step_state": w.procedure_step_state,
                       "input_readiness_state": w.input_readiness_state, "procedure_step_label": w.procedure_step_label}
                      for w in workitems],
    }


def _instance(row, locations: list, steps: list[str]) -> dict[str, Any]:
    ordered = best_first(locations)
    usable = [loc for loc in ordered if loc.availability != Availability.UNAVAILABLE]
    return {
        "sop_instance_uid": row.sop_instance_uid,
        "sop_class_uid": row.sop_class_uid,
        "series_instance_uid": row.series_instance_uid,
        "availability": ordered[0].availability if ordered else None,
        "retrieve_ae_titles": [loc.retrieve_ae_title for loc in usable],
        "retrieve_url": next((loc.retrieve_url for loc in usable if loc.retrieve_url), None),
        "first_notified_at": _iso(row.first_notified_at),
        "last_notified_at": _iso(row.last_notified_at),
        "performed_procedure_step_uids": sorted(steps),
        "locations": [
            {"ae_title": loc.retrieve_ae_title, "availability": loc.availability,
             "retrieve_url": loc.retrieve_url, "retrieve_uri": loc.retrieve_uri,
             "retrieve_location_uid": loc.retrieve_location_uid, "file_set_id": loc.file_set_id,
             "file_set_uid": loc.file_set_uid, "notified_at": _iso(loc.notified_at)}
            for loc in ordered
        ],
    }
