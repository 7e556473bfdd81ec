"""Who may do what: one rights model for calling AE titles (`[[client_ae]]`) and HTTP tokens, and the
table of which right each DIMSE operation and each SOP class needs. Pure: both faces ask the same
question of the same table, and the conformance statement renders it."""

from __future__ import annotations

from enum import StrEnum


class Right(StrEnum):
    NOTIFY = "notify"  # send IANs
    MPPS = "mpps"  # send MPPS
    SCHEDULE = "schedule"  # create workitems, request their cancellation
    PERFORM = "perform"  # claim, update (N-SET) and complete workitems
    WATCH = "watch"  # subscribe, unsubscribe, suspend; open the UPS-RS event channel
    QUERY = "query"  # C-FIND, N-GET, UPS-RS Search and Retrieve; the read API, metrics
    INVENTORY = "inventory"  # send us Inventory instances
    ADMIN = "admin"  # every right, and an administrator's actions
    # The names the HTTP face's tokens were first created with.
    READ = "query"
    SUBSCRIBE = "watch"


ALIASES = {"read": Right.QUERY, "subscribe": Right.WATCH}

MEANING: dict[Right, str] = {
    Right.NOTIFY: "send IANs (DIMSE N-CREATE, POST /api/ian)",
    Right.MPPS: "send MPPS (N-CREATE, N-SET; POST /api/mpps)",
    Right.SCHEDULE: "create workitems; request their cancellation",
    Right.PERFORM: "claim, update, complete or cancel (as its performer) a workitem",
    Right.WATCH: "subscribe, unsubscribe, suspend; open the UPS-RS event channel (alias: subscribe)",
    Right.QUERY: "C-FIND, N-GET, UPS-RS Search and Retrieve, Inventory Q/R of the inventories wfm made, "
                 "the read API and metrics (alias: read)",
    Right.INVENTORY: "send Inventory instances (C-STORE of Inventory Storage)",
    Right.ADMIN: "every right",
}


class RightsError(ValueError):
    """A rights list names something that is not a right."""


def parse_rights(text: str) -> frozenset[Right]:
    """"notify,read" -> {NOTIFY, QUERY}; RightsError naming what is not a right."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    known = {r.value for r in Right} | set(ALIASES)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise RightsError(f"not a right: {', '.join(unknown) or '(none given)'}; rights are "
                          + ", ".join(dict.fromkeys(r.value for r in Right)) + " (read and subscribe: aliases)")
    return frozenset(ALIASES.get(n) or Right(n) for n in names)


def allows(held: frozenset[Right], needed: Right) -> bool:
    return needed in held or Right.ADMIN in held


IAN = "1.2.840.10008.5.1.4.33"
MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"
UPS_PUSH, UPS_WATCH, UPS_PULL, UPS_QUERY = ("1.2.840.10008.5.1.4.34.6.1", "1.2.840.10008.5.1.4.34.6.2",
                                             "1.2.840.10008.5.1.4.34.6.3", "1.2.840.10008.5.1.4.34.6.5")
INVENTORY_STORAGE = "1.2.840.10008.5.1.4.1.1.201.1"
INVENTORY_FIND, INVENTORY_MOVE, INVENTORY_GET = ("1.2.840.10008.5.1.4.1.1.201.2", "1.2.840.10008.5.1.4.1.1.201.3",
                                                 "1.2.840.10008.5.1.4.1.1.201.4")
VERIFICATION = "1.2.840.10008.1.1"

# (SOP class, DIMSE command, N-ACTION type or None) -> the right it needs. UPS N-* requests carry the
# Push SOP Class UID whatever context they came on (PS3.4 CC.3.1.1).
OPERATIONS: dict[tuple[str, str, int | None], Right] = {
    (IAN, "N-CREATE", None): Right.NOTIFY,
    (MPPS_CLASS, "N-CREATE", None): Right.MPPS,
    (MPPS_CLASS, "N-SET", None): Right.MPPS,
    (UPS_PUSH, "N-CREATE", None): Right.SCHEDULE,
    (UPS_PUSH, "N-ACTION", 2): Right.SCHEDULE,  # request cancellation
    (UPS_PUSH, "N-ACTION", 1): Right.PERFORM,  # change state
    (UPS_PUSH, "N-SET", None): Right.PERFORM,
    (UPS_PUSH, "N-ACTION", 3): Right.WATCH,  # subscribe
    (UPS_PUSH, "N-ACTION", 4): Right.WATCH,  # unsubscribe
    (UPS_PUSH, "N-ACTION", 5): Right.WATCH,  # suspend
    (UPS_PUSH, "N-GET", None): Right.QUERY,
    (UPS_PULL, "C-FIND", None): Right.QUERY,
    (UPS_WATCH, "C-FIND", None): Right.QUERY,
    (UPS_QUERY, "C-FIND", None): Right.QUERY,
    (INVENTORY_STORAGE, "C-STORE", None): Right.INVENTORY,
    # The inventories `wfm inventory build` made, served over Inventory Q/R (inventory/dimse/qr_scp.py).
    (INVENTORY_FIND, "C-FIND", None): Right.QUERY,
    (INVENTORY_GET, "C-GET", None): Right.QUERY,
    (INVENTORY_MOVE, "C-MOVE", None): Right.QUERY,
}

# A presentation context is accepted when the calling AE holds any right that SOP class serves; one it
# could never use is rejected at association (result 1, user rejection). Verification is open to all.
CONTEXTS: dict[str, frozenset[Right]] = {
    IAN: frozenset({Right.NOTIFY}),
    MPPS_CLASS: frozenset({Right.MPPS}),
    UPS_PUSH: frozenset({Right.SCHEDULE, Right.PERFORM, Right.WATCH, Right.QUERY}),
    UPS_PULL: frozenset({Right.PERFORM, Right.QUERY}),
    UPS_WATCH: frozenset({Right.WATCH, Right.SCHEDULE, Right.QUERY}),
    UPS_QUERY: frozenset({Right.QUERY}),
    # QUERY: a C-GET requestor proposes Inventory Storage for the sub-operations (its SCP role); its
    # own C-STORE still needs INVENTORY (OPERATIONS).
    INVENTORY_STORAGE: frozenset({Right.INVENTORY, Right.QUERY}),
    INVENTORY_FIND: frozenset({Right.QUERY}),
    INVENTORY_GET: frozenset({Right.QUERY}),
    INVENTORY_MOVE: frozenset({Right.QUERY}),
}


def needed(sop_class: str, command: str, action_type: int | None = None) -> Right | None:
    """The right a DIMSE request needs; None for one anybody listed may send (C-ECHO)."""
    return OPERATIONS.get((sop_class, command, action_type if command == "N-ACTION" else None))


def context_allowed(held: frozenset[Right], sop_class: str) -> bool:
    if sop_class == VERIFICATION or Right.ADMIN in held:
        return True
    return bool(held & CONTEXTS.get(sop_class, frozenset()))


ALL_RIGHTS = frozenset({Right.ADMIN})
