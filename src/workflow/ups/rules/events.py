"""The Event Information of UPS N-EVENT-REPORTs (PS3.4 Table CC.2.4-1), built from a workitem."""

from __future__ import annotations

from workflow.kernel.json_model import JsonDataset, build, first, items, tag_of

STATE_REPORT, CANCEL_REQUESTED, PROGRESS_REPORT, SCP_STATUS_CHANGE, ASSIGNED = 1, 2, 3, 4, 5

EVENT_NAMES = {
    STATE_REPORT: "UPS State Report",
    CANCEL_REQUESTED: "UPS Cancel Requested",
    PROGRESS_REPORT: "UPS Progress Report",
    SCP_STATUS_CHANGE: "SCP Status Change",
    ASSIGNED: "UPS Assigned",
}

STATE = tag_of("ProcedureStepState")
READINESS = tag_of("InputReadinessState")
PROGRESS = tag_of("ProcedureStepProgressInformationSequence")
STATIONS = tag_of("ScheduledStationNameCodeSequence")
PERFORMERS = tag_of("ScheduledHumanPerformersSequence")
PERFORMER_CODE = tag_of("HumanPerformerCodeSequence")
PERFORMER_ORG = tag_of("HumanPerformerOrganization")
CANCEL_DETAILS = ("ReasonForCancellation", "ProcedureStepDiscontinuationReasonCodeSequence",
                  "ContactURI", "ContactDisplayName")


def state_report(workitem: JsonDataset, state: str | None = None) -> JsonDataset:
    """Type 1: the state (or the given intermediate state) and Input Readiness State; for a
    cancellation also its reason and discontinuation code from the progress information."""
    event = build(ProcedureStepState=state or first(workitem, STATE),
                  InputReadinessState=first(workitem, READINESS))
    if (state or first(workitem, STATE)) == "CANCELED":
        for progress in items(workitem, PROGRESS)[:1]:
            for keyword in ("ReasonForCancellation", "ProcedureStepDiscontinuationReasonCodeSequence"):
                tag = tag_of(keyword)
                if tag in progress:
                    event[tag] = progress[tag]
    return event


def cancel_requested(requesting_ae: str, action_information: JsonDataset) -> JsonDataset:
    """Type 2: who asked, and the details they gave."""
    event = build(RequestingAE=requesting_ae)
    for keyword in CANCEL_DETAILS:
        tag = tag_of(keyword)
        if tag in action_information:
            event[tag] = action_information[tag]
    return event


def progress_report(workitem: JsonDataset) -> JsonDataset:
    """Type 3: the Progress Information Sequence as it now is."""
    return {PROGRESS: workitem.get(PROGRESS, {"vr": "SQ", "Value": []})}


def scp_status_change(status: str) -> JsonDataset:
    """Type 4: RESTARTED or GOING DOWN. Subscriptions and workitems are kept in the database, so
    both lists survive a restart (warm start)."""
    return build(SCPStatus=status, SubscriptionListStatus="WARM START",
                 UnifiedProcedureStepListStatus="WARM START")


def assigned(workitem: JsonDataset) -> JsonDataset:
    """Type 5: the station and human performer the workitem is now scheduled for."""
    event = {STATIONS: workitem.get(STATIONS, {"vr": "SQ", "Value": []})}
    performer = (items(workitem, PERFORMERS) or [{}])[0]
    event[PERFORMER_CODE] = performer.get(PERFORMER_CODE, {"vr": "SQ", "Value": []})
    if PERFORMER_ORG in performer:
        event[PERFORMER_ORG] = performer[PERFORMER_ORG]
    return event


def assignment_changed(before: JsonDataset | None, after: JsonDataset) -> bool:
    """Event 5 is due when the station or the human performers were set or changed."""
    def key(ds):
        return (ds.get(STATIONS, {}).get("Value") or [], ds.get(PERFORMERS, {}).get("Value") or [])
    return key(after) != (key(before) if before is not None else ([], [])) and any(key(after))
