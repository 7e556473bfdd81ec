"""Requested procedures: what was asked for (a UPS's Referenced Request Sequence, an MPPS's Scheduled
Step Attributes Sequence) or, lacking any request, a study IANs announced. Their state follows from
the facts (performed steps and instance availability); the `transitions` Machine below is the table
of the moves allowed between states, and a change of state is the path of triggers through it.

The state is derived, not accumulated, so it is the same whatever order IANs, MPPS and workitems
arrived in (the property test of readiness covers it too).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from transitions import Machine

# State -> what it means (the conformance statement and `wfm study` print these).
STATES: dict[str, str] = {
    "REQUESTED": "named by a UPS Referenced Request or an MPPS Scheduled Step; nothing performed or announced "
                 "(yet, or any more)",
    "IN PROGRESS": "an MPPS for it is IN PROGRESS, or IANs announced instances of its study with no MPPS final",
    "PERFORMED": "an MPPS for it is COMPLETED (its Performed Series are the expected set), not all of them "
                 "available ONLINE yet",
    "AVAILABLE": "every instance of the expected set is available ONLINE at some Retrieve AE",
    "DISCONTINUED": "every MPPS for it was DISCONTINUED",
}

# (trigger, sources, destination): the only moves allowed.
TRANSITIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("start", ("REQUESTED", "DISCONTINUED"), "IN PROGRESS"),
    ("complete", ("REQUESTED", "IN PROGRESS", "DISCONTINUED"), "PERFORMED"),
    ("discontinue", ("REQUESTED", "IN PROGRESS"), "DISCONTINUED"),
    ("all_available", ("PERFORMED",), "AVAILABLE"),
    ("instances_lost", ("AVAILABLE",), "PERFORMED"),
    # Later IANs placed every announced instance in another study (a study corrected at the archive),
    # and no MPPS speaks for it: nothing is performed or announced any more.
    ("announcements_withdrawn", ("IN PROGRESS",), "REQUESTED"),
)


@dataclass(frozen=True)
class ProcedureFacts:
    step_statuses: frozenset[str]   # statuses of the MPPS that performed it
    announced: bool                 # any IAN announced an instance of its study
    expected_available: bool        # the expected set is known, non-empty and all ONLINE somewhere


def target_state(facts: ProcedureFacts) -> str:
    if "COMPLETED" in facts.step_statuses:
        return "AVAILABLE" if facts.expected_available else "PERFORMED"
    if "IN PROGRESS" in facts.step_statuses:
        return "IN PROGRESS"
    if "DISCONTINUED" in facts.step_statuses:
        return "DISCONTINUED"
    return "IN PROGRESS" if facts.announced else "REQUESTED"


@dataclass
class _Procedure:
    state: str


def _machine() -> Machine:
    machine = Machine(model=None, states=list(STATES), initial="REQUESTED", auto_transitions=False)
    for trigger, sources, dest in TRANSITIONS:
        machine.add_transition(trigger, list(sources), dest)
    return machine


_MACHINE = _machine()


def _path(source: str, dest: str) -> list[str]:
    """The shortest sequence of triggers from source to dest (breadth-first over TRANSITIONS)."""
    queue, seen = deque([(source, [])]), {source}
    while queue:
        state, triggers = queue.popleft()
        if state == dest:
            return triggers
        for trigger, sources, nxt in TRANSITIONS:
            if state in sources and nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, triggers + [trigger]))
    raise ValueError(f"no transition path from {source} to {dest}")


def advance(current: str, facts: ProcedureFacts) -> list[str]:
    """Move a procedure in `current` state to where the facts put it, through the Machine. Returns the
    triggers fired (empty when the state stays).

    The model is never registered with the shared Machine: `transitions` finds registered models by
    `==`, so value-equal models from several threads (readiness worker, N-CREATE associations) broke
    each other's registration. Each trigger runs on this call's own model, sharing nothing."""
    target = target_state(facts)
    triggers = _path(current, target)
    model = _Procedure(current)
    for trigger in triggers:
        if not _MACHINE.events[trigger].trigger(model):
            raise ValueError(f"{trigger} is not allowed from {model.state}")
    assert model.state == target
    return triggers
