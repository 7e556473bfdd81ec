"""Who may do what: the rights a bearer token (and, later, a calling AE) holds, and which right each
operation needs. Pure: both faces ask the same question of the same table."""

from __future__ import annotations

from enum import StrEnum


class Right(StrEnum):
    READ = "read"  # retrieve and search workitems, studies, reports, events, metrics
    NOTIFY = "notify"  # send IANs and MPPS
    SCHEDULE = "schedule"  # create workitems, request their cancellation
    PERFORM = "perform"  # claim, update and complete workitems
    SUBSCRIBE = "subscribe"  # subscribe, unsubscribe, suspend, open the event channel
    ADMIN = "admin"  # everything, and the actions an administrator takes (reconcile now, retry events)


MEANING: dict[Right, str] = {
    Right.READ: "retrieve and search workitems; read studies, explanations, reconciliation reports, owed events",
    Right.NOTIFY: "send IANs and MPPS over HTTP",
    Right.SCHEDULE: "create workitems; request their cancellation",
    Right.PERFORM: "claim, update, complete or cancel (by its performer) a workitem",
    Right.SUBSCRIBE: "subscribe, unsubscribe, suspend; open the WebSocket event channel",
    Right.ADMIN: "every right",
}


class RightsError(ValueError):
    """A rights list names something that is not a right."""


def parse_rights(text: str) -> frozenset[Right]:
    """"read,perform" -> {READ, PERFORM}; RightsError naming what is not a right."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in Right.__members__.values()]
    if unknown or not names:
        raise RightsError(f"not a right: {', '.join(unknown) or '(none given)'}; rights are "
                          + ", ".join(r.value for r in Right))
    return frozenset(Right(n) for n in names)


def allows(held: frozenset[Right], needed: Right) -> bool:
    return needed in held or Right.ADMIN in held
