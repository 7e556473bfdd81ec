"""The requested procedure machine: every state the facts can lead to is reachable through the table
of allowed moves, in any order the facts grow."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from workflow.readiness.rules.procedure import STATES, TRANSITIONS, ProcedureFacts, advance, target_state

# What can happen to a requested procedure, in any order: an MPPS starts / completes / is
# discontinued, an IAN arrives, later IANs move every announced instance to another study, the expected
# set becomes (or stops being) all ONLINE.
EVENTS = ("IN PROGRESS", "COMPLETED", "DISCONTINUED", "ian", "moved away", "available", "lost")


# The moves the design allows, written out here independently of the code's table: a table that gains
# a move (say AVAILABLE back to REQUESTED) fails the property below as soon as a history takes it.
ALLOWED_MOVES = {
    ("REQUESTED", "IN PROGRESS"), ("DISCONTINUED", "IN PROGRESS"),
    ("REQUESTED", "PERFORMED"), ("IN PROGRESS", "PERFORMED"), ("DISCONTINUED", "PERFORMED"),
    ("REQUESTED", "DISCONTINUED"), ("IN PROGRESS", "DISCONTINUED"),
    ("PERFORMED", "AVAILABLE"), ("AVAILABLE", "PERFORMED"),
    ("IN PROGRESS", "REQUESTED"),  # only when nothing performed or announced is left
}


@given(st.lists(st.sampled_from(EVENTS), max_size=12))
def test_any_history_moves_only_along_the_allowed_moves(events):
    steps, announced, available, state = set(), False, False, "REQUESTED"
    for event in events:
        if event in ("IN PROGRESS", "COMPLETED", "DISCONTINUED"):
            steps.add(event)
        announced = True if event == "ian" else False if event == "moved away" else announced
        available = True if event == "available" else False if event == "lost" else available
        facts = ProcedureFacts(frozenset(steps), announced, available)
        for trigger in advance(state, facts):
            [dest] = [d for t, sources, d in TRANSITIONS if t == trigger and state in sources]
            assert (state, dest) in ALLOWED_MOVES, f"{trigger}: {state} -> {dest} is not an allowed move"
            state = dest
        assert state == target_state(facts)


def test_the_table_has_exactly_the_allowed_moves():
    assert {(s, d) for _, sources, d in TRANSITIONS for s in sources} == ALLOWED_MOVES


@pytest.mark.parametrize("facts, state", [
    (ProcedureFacts(frozenset(), False, False), "REQUESTED"),
    (ProcedureFacts(frozenset(), True, False), "IN PROGRESS"),
    (ProcedureFacts(frozenset({"IN PROGRESS"}), False, False), "IN PROGRESS"),
    (ProcedureFacts(frozenset({"DISCONTINUED"}), True, False), "DISCONTINUED"),
    (ProcedureFacts(frozenset({"DISCONTINUED", "IN PROGRESS"}), True, False), "IN PROGRESS"),
    (ProcedureFacts(frozenset({"COMPLETED", "IN PROGRESS"}), True, False), "PERFORMED"),
    (ProcedureFacts(frozenset({"COMPLETED"}), True, True), "AVAILABLE"),
])
def test_target_states(facts, state):
    assert target_state(facts) == state and state in STATES


def test_advance_is_safe_from_several_threads():
    """The readiness worker and UPS N-CREATE association threads advance procedures at once: one shared
    table must give each caller its own answer (a shared Machine registering value-equal models raised
    AttributeError and ValueError here)."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [("REQUESTED", ProcedureFacts(frozenset({"COMPLETED"}), True, True)),
             ("AVAILABLE", ProcedureFacts(frozenset({"COMPLETED"}), True, False)),
             ("REQUESTED", ProcedureFacts(frozenset(), True, False)),
             ("IN PROGRESS", ProcedureFacts(frozenset({"DISCONTINUED"}), True, False))]
    expected = [advance(state, facts) for state, facts in cases]

    def work(n: int) -> int:
        wrong = 0
        for i in range(3000):
            state, facts = cases[(i + n) % len(cases)]
            wrong += advance(state, facts) != expected[(i + n) % len(cases)]
        return wrong

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(work, range(4))) == 0
