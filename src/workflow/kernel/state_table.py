"""A DICOM state table (rows = events, columns = current states) as a `transitions` Machine: one
transition per cell (internal when the state stays), two for a cell guarded by "Final State
requirements met". Shared by the UPS (Table CC.1.1-2) and MPPS (Annex F) state machines."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Generic, Iterable, TypeVar

from transitions import Machine

GUARDS = {"final_requirements_met": "Final State requirements met"}

D = TypeVar("D")  # a module's Decision: has `.text`


@dataclass(frozen=True)
class Cell(Generic[D]):
    """One cell of a state table; a guarded cell has the outcome when its guard holds and the other."""

    outcome: D
    guard: str | None = None  # a key of GUARDS: an attribute of the request the Machine tests
    otherwise: D | None = None

    @property
    def text(self) -> str:
        if self.guard is None:
            return self.outcome.text
        return f"if {GUARDS[self.guard]}: {self.outcome.text}; else {self.otherwise.text}"


@dataclass
class _Request:
    """The Machine's model for one decision: the current column and what the guard reads."""

    state: str
    final_requirements_met: bool = False
    decision: Any = None


def _recorder(decision):
    def record(event) -> None:
        event.model.decision = decision
    return record


def build_machine(table: dict[Enum, tuple[Cell, ...]], columns: tuple[str, ...], finals: Iterable[str],
                  initial: str, destination: Callable[[Any], str | None]) -> Machine:
    """`destination(decision)` is the state a decision leads to; None makes an internal transition."""
    finals = set(finals)
    states = [{"name": column, "final": column in finals} for column in columns]
    machine = Machine(model=None, states=states, initial=initial, auto_transitions=False, send_event=True)
    for event, cells in table.items():
        for source, cell in zip(columns, cells, strict=True):
            machine.add_transition(event.name, source, destination(cell.outcome), conditions=cell.guard,
                                   after=_recorder(cell.outcome))
            if cell.guard is not None:
                machine.add_transition(event.name, source, destination(cell.otherwise), unless=cell.guard,
                                       after=_recorder(cell.otherwise))
    return machine


def decide(machine: Machine, event: Enum, column: str, final_requirements_met: bool = False):
    """The decision of the cell (event, column). Models are not registered with the Machine, so
    concurrent decisions share nothing. A Machine is built once and never changed and decisions are
    frozen, so each cell's first answer is kept: a trigger costs ~35 us, and every claim asks."""
    key = (event.name, column, final_requirements_met)
    decided = machine.__dict__.setdefault("_decided", {})
    if key not in decided:
        request = _Request(column, final_requirements_met)
        machine.events[event.name].trigger(request)
        decided[key] = request.decision
    return decided[key]
