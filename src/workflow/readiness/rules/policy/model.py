"""The policy model: what a loaded `[[policy]]` says, as frozen values. Which workitems it is for
(`Selector`), which instances are inputs and from where (`InputRules`), when the inputs are complete
(the condition tree) and what a downgrade does."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Union

from workflow.ian.rules.availability import Availability

if TYPE_CHECKING:
    from workflow.readiness.rules.policy.facts import WorkitemFacts

DEFAULT_ORDER = 100


class Readiness(StrEnum):
    """Input Readiness State (0040,4041)."""

    READY = "READY"
    INCOMPLETE = "INCOMPLETE"
    UNAVAILABLE = "UNAVAILABLE"


class OnDowngrade(StrEnum):
    INCOMPLETE = "INCOMPLETE"
    UNAVAILABLE = "UNAVAILABLE"
    IGNORE = "ignore"


class Priority(StrEnum):
    """Scheduled Procedure Step Priority (0074,1200)."""

    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


@dataclass(frozen=True)
class Code:
    """A coded entry: Code Value, Coding Scheme Designator and (optional when matching) Code Meaning."""

    value: str
    scheme: str
    meaning: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.value, self.scheme)

    def __str__(self) -> str:
        return f'({self.value}, {self.scheme}, "{self.meaning}")' if self.meaning else f"({self.value}, {self.scheme})"


# Conditions of complete_when: a small expression tree.

@dataclass(frozen=True)
class AllOf:
    conditions: tuple["Condition", ...]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple["Condition", ...]


@dataclass(frozen=True)
class ExpectedSetAvailable:
    """Every instance of the expected set (the union of the study's COMPLETED MPPS Performed Series)
    is available in an accepted way."""


@dataclass(frozen=True)
class ExpectedSetKnown:
    """An expected set is known (True) or not (False)."""

    known: bool = True


@dataclass(frozen=True)
class ExpectedCount:
    """At least `count` instances are inputs."""

    count: int


@dataclass(frozen=True)
class ListedInstancesAvailable:
    """Every instance the workitem already lists in its Input Information Sequence is available."""


@dataclass(frozen=True)
class Settled:
    """No new IAN for the study for `seconds`, and every known candidate available."""

    seconds: float


Condition = Union[AllOf, AnyOf, ExpectedSetAvailable, ExpectedSetKnown, ExpectedCount,
                  ListedInstancesAvailable, Settled]


@dataclass(frozen=True)
class Selector:
    """`applies_to`: which workitems a policy is for.

    A policy only ever concerns workitems linked to the notified study: by Study Instance UID, or (when
    `link_by_accession_number`) by an Accession Number of the workitem's Referenced Request Sequence that
    one of the study's MPPS names. Within the study's workitems the lists select: any value of one list
    may match (OR), every non-empty list must match (AND), an empty list matches every workitem. Patterns
    of `accession_numbers` and `worklist_labels` may use `*` and `?` (case-sensitive)."""

    accession_numbers: tuple[str, ...] = ()
    scheduled_workitem_codes: tuple[Code, ...] = ()
    worklist_labels: tuple[str, ...] = ()
    link_by_accession_number: bool = False

    @property
    def matches_everything(self) -> bool:
        return not (self.accession_numbers or self.scheduled_workitem_codes or self.worklist_labels)

    def matches(self, workitem: "WorkitemFacts") -> bool:
        if self.accession_numbers and not any(
                _wildcard(p).fullmatch(a.strip()) for p in self.accession_numbers for a in workitem.accession_numbers):
            return False
        if self.scheduled_workitem_codes:
            wanted = {c.key for c in self.scheduled_workitem_codes}
            if not any((v.strip(), s.strip()) in wanted for v, s in workitem.scheduled_workitem_codes):
                return False
        if self.worklist_labels:
            label = (workitem.worklist_label or "").strip()
            if not label or not any(_wildcard(p).fullmatch(label) for p in self.worklist_labels):
                return False
        return True


@functools.lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


@dataclass(frozen=True)
class InputRules:
    """`inputs`: which instances enter the Input Information Sequence and from where."""

    sop_class_uids: tuple[str, ...] = ()  # empty: every SOP class
    accepted_availability: frozenset[Availability] = frozenset({Availability.ONLINE})
    preferred_retrieve_aes: tuple[str, ...] = ()
    restrict_to_expected_set: bool = True

    def allows(self, sop_class_uid: str) -> bool:
        return not self.sop_class_uids or sop_class_uid in self.sop_class_uids

    @property
    def accepted_words(self) -> str:
        """The accepted availabilities, best first: "ONLINE or NEARLINE"."""
        return " or ".join(a.value for a in sorted(self.accepted_availability, key=lambda a: a.rank))


@dataclass(frozen=True)
class Policy:
    name: str
    complete_when: Condition
    description: str = ""
    order: int = DEFAULT_ORDER
    applies_to: Selector = field(default_factory=Selector)
    inputs: InputRules = field(default_factory=InputRules)
    on_downgrade: OnDowngrade = OnDowngrade.INCOMPLETE
    source: str = ""  # "file: policy[i]"

    @functools.cached_property
    def reads_listed(self) -> bool:
        """Whether `listed_instances_available` is among its conditions (the only one that reads what
        a workitem lists)."""
        def walk(cond) -> bool:
            if isinstance(cond, (AllOf, AnyOf)):
                return any(walk(c) for c in cond.conditions)
            return isinstance(cond, ListedInstancesAvailable)
        return walk(self.complete_when)
