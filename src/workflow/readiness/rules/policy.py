"""Declarative workflow policies (policies/*.toml): which workitems an availability change concerns,
which instances enter a UPS Input Information Sequence, when the inputs are complete, what a downgrade
does, and templates that create workitems when a study becomes available.

Pure: no database, no clock, no I/O except `load_policies` reading the files. The readiness engine
gathers `Facts` (what IANs and MPPS said about one study, what the workitem lists, the time), calls
`evaluate` and `decide`, and writes what they return. The schema is documented key by key in
policies/README.md; `describe` renders a loaded set in words for the conformance statement.

Decisions (repeated in policies/README.md and in `describe`):

* Input Readiness State (0040,4041) follows the three meanings of PS3.3: INCOMPLETE = the list of input
  instances may not be complete; UNAVAILABLE = the list is complete but some are not available; READY =
  the list is complete and all are available. Applied to what this server can list (an item of the
  Input Information Sequence needs a Retrieve AE Title, so only announced instances can be listed):
  - an instance the policy needs that no IAN has announced yet makes the list incomplete: INCOMPLETE;
  - when every instance the policy needs has been announced and some of them have no location at an
    accepted availability (OFFLINE, NEARLINE when only ONLINE is accepted, UNAVAILABLE everywhere), the
    list is complete but not available: UNAVAILABLE;
  - both at once: INCOMPLETE (the list is not complete yet).
* Every condition of `complete_when` yields one of MET > UNAVAILABLE > INCOMPLETE; `all_of` takes the
  lowest of its parts, `any_of` the highest. MET makes the workitem READY if at least one instance is an
  input (a workitem never becomes READY with an empty Input Information Sequence).
* `settled` (N seconds): met when the last IAN for the study is at least N seconds old and every known
  input candidate of the study is available in an accepted way; candidates UNAVAILABLE at every location
  count as withdrawn from the study and are ignored by this condition. Every IAN (upgrade or downgrade)
  restarts the clock. `Evaluation.settle_due_at` is the earliest moment at which the passing of time
  alone would change the readiness (None when no timer is needed).
* `evaluate` is a pure function of `Facts`: instances and locations are put in a canonical order when the
  facts are built, ties are broken on values, so the order in which IANs arrived never matters.
* `decide` never touches a workitem that is not SCHEDULED (IN PROGRESS, COMPLETED, CANCELED).
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

from workflow.config import ConfigError
from workflow.ian.rules.availability import Availability
from workflow.kernel.attributes import is_ae_title, is_uid

SCHEMA_VERSION = 1
DEFAULT_ORDER = 100
_UUID_NAMESPACE = uuid.UUID("5b0f7a8e-3c1d-4e59-9a61-2f6d0c4b7e10")  # workitem UIDs of templates


# --- errors --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One thing wrong in a policy file: the file, the key as a dotted path, and why."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.reason}" if self.key else f"{self.file}: {self.reason}"


class PolicyError(ConfigError):
    """The policy files are invalid. `file`, `key` (dotted path such as
    `policy[2].complete_when.all_of[0].settled`, empty for a TOML syntax error) and `reason` describe the
    first problem; `problems` lists every problem found (at most one per policy or template)."""

    def __init__(self, file: str, key: str, reason: str, problems: Sequence[Problem] = ()) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        self.problems: tuple[Problem, ...] = tuple(problems) or (Problem(file, key, reason),)
        text = str(self.problems[0])
        if len(self.problems) > 1:
            text += f" (and {len(self.problems) - 1} more problem{'s' if len(self.problems) > 2 else ''})"
        super().__init__(text)


# --- the policy model ----------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class InputRules:
    """`inputs`: which instances enter the Input Information Sequence and from where."""

    sop_class_uids: tuple[str, ...] = ()  # empty: every SOP class
    accepted_availability: frozenset[Availability] = frozenset({Availability.ONLINE})
    preferred_retrieve_aes: tuple[str, ...] = ()
    restrict_to_expected_set: bool = True

    def allows(self, sop_class_uid: str) -> bool:
        return not self.sop_class_uids or sop_class_uid in self.sop_class_uids


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


@dataclass(frozen=True)
class TemplateConditions:
    """When a template fires; every condition given must hold (AND), a list matches when any of its
    values is among the study's (OR). An empty set of conditions matches every study."""

    modalities: tuple[str, ...] = ()
    sop_class_uids: tuple[str, ...] = ()
    calling_ae_titles: tuple[str, ...] = ()
    procedure_codes: tuple[Code, ...] = ()
    study_description: str | None = None  # a Python regular expression, searched (re.search)
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.study_description is not None:
            object.__setattr__(self, "_pattern", re.compile(self.study_description))


@dataclass(frozen=True)
class WorkitemSpec:
    """What a template creates."""

    scheduled_workitem_code: Code
    procedure_step_label: str
    station_name_code: Code | None = None
    priority: Priority = Priority.MEDIUM
    worklist_label: str | None = None  # None: the server's default_worklist_label
    start_delay: float = 0.0  # seconds: Scheduled Procedure Step Start DateTime = now + start_delay


@dataclass(frozen=True)
class Template:
    name: str
    conditions: TemplateConditions
    creates: WorkitemSpec
    description: str = ""
    source: str = ""

    def mismatches(self, study: "StudyFacts") -> tuple[str, ...]:
        """Why the study does not match (empty: it matches)."""
        c, out = self.conditions, []
        if c.modalities and not set(c.modalities) & {m.strip() for m in study.modalities}:
            out.append(f"modality {sorted(study.modalities) or 'unknown'} not in {list(c.modalities)}")
        if c.sop_class_uids and not set(c.sop_class_uids) & set(study.sop_class_uids):
            out.append(f"no instance of SOP class {list(c.sop_class_uids)}")
        if c.calling_ae_titles and not set(c.calling_ae_titles) & {a.strip() for a in study.calling_ae_titles}:
            out.append(f"calling AE {sorted(study.calling_ae_titles) or 'unknown'} not in {list(c.calling_ae_titles)}")
        if c.procedure_codes and not {p.key for p in c.procedure_codes} & {
                (v.strip(), s.strip()) for v, s in study.procedure_codes}:
            out.append(f"procedure code {sorted(study.procedure_codes) or 'unknown'} not among "
                       f"{[str(p) for p in c.procedure_codes]}")
        if c._pattern is not None and (study.study_description is None
                                       or not c._pattern.search(study.study_description)):
            out.append(f"study description {study.study_description!r} does not match /{c.study_description}/")
        return tuple(out)

    def matches(self, study: "StudyFacts") -> bool:
        return not self.mismatches(study)

    def start_at(self, now: datetime) -> datetime:
        """Scheduled Procedure Step Start DateTime of the workitem created at `now`."""
        return now + timedelta(seconds=self.creates.start_delay)

    def workitem_uid(self, study_instance_uid: str) -> str:
        """The SOP Instance UID of the workitem this template creates for a study: the same for the same
        template name and study, so creating it twice is a duplicate (idempotent per study and template)."""
        return f"2.25.{uuid.uuid5(_UUID_NAMESPACE, f'{self.name}|{study_instance_uid.strip()}').int}"


@dataclass(frozen=True)
class PolicySet:
    """Policies in selection order (ascending `order`, then file, then position) and templates (in file
    order). The last policy that can be selected matches every workitem (the fallback)."""

    policies: tuple[Policy, ...]
    templates: tuple[Template, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not any(p.applies_to.matches_everything for p in self.policies):
            raise ValueError("a PolicySet needs a policy whose applies_to matches every workitem")

    def select(self, workitem: "WorkitemFacts") -> Policy:
        """The first policy whose selector matches the workitem (there is always one: the fallback)."""
        return next(p for p in self.policies if p.applies_to.matches(workitem))

    def policy_for(self, workitem: "WorkitemFacts", study_instance_uid: str,
                   mpps_accession_numbers: Iterable[str] = ()) -> Policy | None:
        """The policy that governs `workitem` for an availability change in `study_instance_uid`, or None
        when the change does not concern the workitem. The policy is selected on the workitem's own
        attributes; it then says whether a link by Accession Number (the workitem's Study Instance UID is
        absent or another one, an Accession Number of the study's MPPS is the workitem's) is enough. There
        is no fall-through to a later policy."""
        policy = self.select(workitem)
        if (workitem.study_instance_uid or "").strip() == study_instance_uid.strip():
            return policy
        if policy.applies_to.link_by_accession_number:
            mine = {a.strip() for a in workitem.accession_numbers if a.strip()}
            if mine & {a.strip() for a in mpps_accession_numbers}:
                return policy
        return None

    def templates_for(self, study: "StudyFacts") -> tuple[Template, ...]:
        return tuple(t for t in self.templates if t.matches(study))

    def policy(self, name: str) -> Policy:
        return next(p for p in self.policies if p.name == name)


# --- facts ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Location:
    """Where an instance is: one Retrieve AE Title and what the latest IAN said about it there."""

    ae_title: str
    availability: Availability
    retrieve_url: str | None
    notified_at: datetime
    # Storage Media File-set ID / UID the IAN gave: the input item's DICOM Media Retrieval Sequence.
    file_set_id: str | None = None
    file_set_uid: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "availability", Availability(self.availability))
        object.__setattr__(self, "ae_title", self.ae_title.strip())


def _location(value: Location | tuple) -> Location:
    return value if isinstance(value, Location) else Location(*value)


@dataclass(frozen=True)
class InstanceFacts:
    """One instance of the study as IANs announced it. `locations` may be given as Location objects or
    (ae_title, availability, retrieve_url, notified_at) tuples; they are kept in a canonical order."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    locations: tuple[Location, ...]
    first_notified_at: datetime | None = None

    def __post_init__(self) -> None:
        locs = tuple(sorted((_location(x) for x in self.locations),
                            key=lambda x: (x.ae_title, x.availability.rank, x.retrieve_url or "", x.notified_at)))
        object.__setattr__(self, "locations", locs)

    @property
    def withdrawn(self) -> bool:
        """UNAVAILABLE at every location (or none known): no longer anywhere."""
        return all(x.availability is Availability.UNAVAILABLE for x in self.locations)

    @property
    def best_availability(self) -> Availability:
        return min((x.availability for x in self.locations), key=lambda a: a.rank, default=Availability.UNAVAILABLE)


@dataclass(frozen=True)
class Facts:
    """What is known when a workitem's readiness is evaluated.

    expected: SOP Instance UIDs of the expected set (the union of the Performed Series Sequence of the
      study's COMPLETED MPPS); None when no MPPS is known.
    instances: every instance IANs announced for the study (unique SOP Instance UIDs).
    listed: SOP Instance UIDs already in the workitem's Input Information Sequence.
    last_ian_at: when the last IAN for the study was received; None when none was.
    now: the time of the evaluation.
    """

    expected: frozenset[str] | None
    instances: tuple[InstanceFacts, ...]
    listed: frozenset[str]
    last_ian_at: datetime | None
    now: datetime

    def __post_init__(self) -> None:
        if self.expected is not None:
            object.__setattr__(self, "expected", frozenset(self.expected))
        object.__setattr__(self, "listed", frozenset(self.listed))
        instances = tuple(sorted(self.instances, key=lambda i: i.sop_instance_uid))
        for a, b in zip(instances, instances[1:]):
            if a.sop_instance_uid == b.sop_instance_uid:
                raise ValueError(f"instance {a.sop_instance_uid} appears twice in the facts")
        object.__setattr__(self, "instances", instances)


@dataclass(frozen=True)
class WorkitemFacts:
    """A workitem's attributes that select its policy."""

    study_instance_uid: str | None = None
    accession_numbers: frozenset[str] = frozenset()  # Referenced Request Sequence > Accession Number
    scheduled_workitem_codes: frozenset[tuple[str, str]] = frozenset()  # (Code Value, Coding Scheme Designator)
    worklist_label: str | None = None


@dataclass(frozen=True)
class StudyFacts:
    """What is known about a study when templates are checked (values from IANs, MPPS and instances)."""

    study_instance_uid: str
    modalities: frozenset[str] = frozenset()
    sop_class_uids: frozenset[str] = frozenset()
    calling_ae_titles: frozenset[str] = frozenset()  # AEs that sent IANs for the study
    procedure_codes: frozenset[tuple[str, str]] = frozenset()  # (Code Value, Coding Scheme Designator)
    study_description: str | None = None


@dataclass(frozen=True)
class Input:
    """One item for the Input Information Sequence: the instance and the location chosen for it."""

    instance: InstanceFacts
    ae_title: str
    retrieve_url: str | None
    availability: Availability
    file_set_id: str | None = None
    file_set_uid: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """readiness: what complete_when says. inputs: the instances to list (sorted by series, instance).
    missing: SOP Instance UIDs a failing condition needs that are not inputs (empty when READY).
    not_available: those of `missing` that were announced but have no accepted location.
    reasons: one line per condition, in the order of the policy. settle_due_at: see `evaluate`."""

    policy: str
    readiness: Readiness
    inputs: tuple[Input, ...]
    missing: tuple[str, ...]
    not_available: tuple[str, ...]
    reasons: tuple[str, ...]
    settle_due_at: datetime | None


@dataclass(frozen=True)
class Decision:
    """What to write into a SCHEDULED workitem."""

    readiness: Readiness
    inputs: tuple[Input, ...]
    reason: str


# --- evaluation ----------------------------------------------------------------------------------------

class _Truth(IntEnum):
    INCOMPLETE = 0
    UNAVAILABLE = 1
    MET = 2


@dataclass(frozen=True)
class _Outcome:
    truth: _Truth
    reason: str
    missing: frozenset[str] = frozenset()
    not_available: frozenset[str] = frozenset()


class _Study:
    """The facts seen through one policy (independent of `now`)."""

    def __init__(self, policy: Policy, facts: Facts) -> None:
        rules = policy.inputs
        self.facts = facts
        self.accept_words = " or ".join(a.value for a in sorted(rules.accepted_availability, key=lambda a: a.rank))
        self.known = {i.sop_instance_uid: i for i in facts.instances}
        self.filtered_out = frozenset(u for u, i in self.known.items() if not rules.allows(i.sop_class_uid))
        self.accepted: dict[str, Input] = {}
        for uid, inst in self.known.items():
            if uid not in self.filtered_out and (chosen := _choose(inst, rules)) is not None:
                self.accepted[uid] = chosen
        relevant = [u for u in self.known if u not in self.filtered_out]
        if facts.expected is not None and rules.restrict_to_expected_set:
            relevant = [u for u in relevant if u in facts.expected]
        self.candidates = frozenset(relevant)
        self.inputs = tuple(sorted((self.accepted[u] for u in self.candidates if u in self.accepted),
                                   key=lambda x: (x.instance.series_instance_uid, x.instance.sop_instance_uid)))
        self.expected = None if facts.expected is None else facts.expected - self.filtered_out
        self.listed = facts.listed - self.filtered_out

    def required(self, name: str, required: frozenset[str], what: str) -> _Outcome:
        """All of `required` must be accepted: MET, else INCOMPLETE if one is unannounced, else UNAVAILABLE."""
        missing = frozenset(u for u in required if u not in self.accepted)
        n = len(required)
        if not missing:
            return _Outcome(_Truth.MET, f"{name}: all {n} {what} are available {self.accept_words}")
        unannounced = frozenset(u for u in missing if u not in self.known)
        unavailable = missing - unannounced
        parts = []
        if unannounced:
            parts.append(f"{len(unannounced)} of {n} {what} not yet announced by any IAN ({_uids(unannounced)})")
        if unavailable:
            parts.append(f"{len(unavailable)} of {n} {what} announced but not available {self.accept_words} "
                         f"({self._states(unavailable)})")
        truth = _Truth.INCOMPLETE if unannounced else _Truth.UNAVAILABLE
        return _Outcome(truth, f"{name}: " + "; ".join(parts), missing, unavailable)

    def _states(self, uids: Iterable[str]) -> str:
        return _uids(uids, lambda u: f"{u} {self.known[u].best_availability.value}")


def _choose(inst: InstanceFacts, rules: InputRules) -> Input | None:
    """The location an input is retrieved from: among locations at an accepted availability, the first
    in preferred_retrieve_aes order (unlisted AEs after listed ones), then the best availability, then the
    most recently notified; remaining ties by AE title and URL."""
    locs = [x for x in inst.locations if x.availability in rules.accepted_availability]
    if not locs:
        return None
    pref = {ae: i for i, ae in enumerate(rules.preferred_retrieve_aes)}
    rank = lambda x: (pref.get(x.ae_title, len(pref)), x.availability.rank)  # noqa: E731
    top = min(rank(x) for x in locs)
    locs = [x for x in locs if rank(x) == top]
    latest = max(x.notified_at for x in locs)
    best = min((x for x in locs if x.notified_at == latest), key=lambda x: (x.ae_title, x.retrieve_url or ""))
    return Input(inst, best.ae_title, best.retrieve_url, best.availability, best.file_set_id, best.file_set_uid)


def _uids(uids: Iterable[str], fmt=lambda u: u, limit: int = 5) -> str:
    items = sorted(uids)
    shown = ", ".join(fmt(u) for u in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _leaf(cond: Condition, s: _Study, now: datetime) -> _Outcome:
    facts = s.facts
    if isinstance(cond, ExpectedSetAvailable):
        if s.expected is None:
            return _Outcome(_Truth.INCOMPLETE, "expected_set_available: no expected set (no COMPLETED MPPS "
                                               "is known for the study)")
        return s.required("expected_set_available", s.expected, "expected instances")
    if isinstance(cond, ExpectedSetKnown):
        known = facts.expected is not None
        words = f"an expected set of {len(facts.expected)} instances is known" if known else "no expected set is known"
        return _Outcome(_Truth.MET if known == cond.known else _Truth.INCOMPLETE,
                        f"expected_set_known = {str(cond.known).lower()}: {words}")
    if isinstance(cond, ListedInstancesAvailable):
        if not s.listed:
            return _Outcome(_Truth.INCOMPLETE, "listed_instances_available: the workitem lists no input instance"
                                               " of an accepted SOP class")
        return s.required("listed_instances_available", s.listed, "listed instances")
    if isinstance(cond, ExpectedCount):
        have = len(s.inputs)
        if have >= cond.count:
            return _Outcome(_Truth.MET, f"expected_count = {cond.count}: {have} instances are inputs")
        waiting = frozenset(u for u in s.candidates if u not in s.accepted and not s.known[u].withdrawn)
        truth = _Truth.UNAVAILABLE if have + len(waiting) >= cond.count else _Truth.INCOMPLETE
        extra = f"; {len(waiting)} more announced but not available {s.accept_words}" if waiting else ""
        return _Outcome(truth, f"expected_count = {cond.count}: {have} instances are inputs{extra}", waiting, waiting)
    if isinstance(cond, Settled):
        if facts.last_ian_at is None:
            return _Outcome(_Truth.INCOMPLETE, f"settled = {_secs(cond.seconds)}: no IAN received for the study")
        due = facts.last_ian_at + timedelta(seconds=cond.seconds)
        if now < due:
            return _Outcome(_Truth.INCOMPLETE, f"settled = {_secs(cond.seconds)}: last IAN at "
                                               f"{facts.last_ian_at.isoformat()}, settles at {due.isoformat()}")
        considered = frozenset(u for u in s.candidates if not s.known[u].withdrawn)
        if not considered:
            return _Outcome(_Truth.INCOMPLETE, f"settled = {_secs(cond.seconds)}: settled, but no instance of the "
                                               "study is an input candidate")
        bad = frozenset(u for u in considered if u not in s.accepted)
        if bad:
            return _Outcome(_Truth.UNAVAILABLE, f"settled = {_secs(cond.seconds)}: settled, but {len(bad)} of "
                                                f"{len(considered)} known instances are not available "
                                                f"{s.accept_words} ({s._states(bad)})", bad, bad)
        return _Outcome(_Truth.MET, f"settled = {_secs(cond.seconds)}: no IAN since "
                                    f"{facts.last_ian_at.isoformat()}; all {len(considered)} known instances "
                                    f"are available {s.accept_words}")
    raise TypeError(f"not a condition: {cond!r}")


def _truth(cond: Condition, s: _Study, now: datetime, leaves: list[_Outcome]) -> _Truth:
    if isinstance(cond, (AllOf, AnyOf)):
        parts = [_truth(c, s, now, leaves) for c in cond.conditions]  # every leaf, for the reasons
        return min(parts) if isinstance(cond, AllOf) else max(parts)
    outcome = _leaf(cond, s, now)
    leaves.append(outcome)
    return outcome.truth


def _readiness(truth: _Truth, s: _Study) -> Readiness:
    if truth is _Truth.MET:
        return Readiness.READY if s.inputs else Readiness.INCOMPLETE
    return Readiness.UNAVAILABLE if truth is _Truth.UNAVAILABLE else Readiness.INCOMPLETE


def _settle_times(cond: Condition, last: datetime) -> set[datetime]:
    if isinstance(cond, (AllOf, AnyOf)):
        return set().union(*(_settle_times(c, last) for c in cond.conditions))
    return {last + timedelta(seconds=cond.seconds)} if isinstance(cond, Settled) else set()


def evaluate(policy: Policy, facts: Facts) -> Evaluation:
    """Evaluate `policy` on `facts` (pure; see the module docstring for the rules).

    inputs: instances of an allowed SOP class (and of the expected set, when one is known and
    restrict_to_expected_set) with at least one location at an accepted availability, each with its
    chosen location (`_choose`). settle_due_at: the earliest time after `now` at which, with no new facts,
    the readiness would change because a `settled` condition matures; None if none would."""
    s = _Study(policy, facts)
    leaves: list[_Outcome] = []
    truth = _truth(policy.complete_when, s, facts.now, leaves)
    readiness = _readiness(truth, s)
    reasons = [o.reason for o in leaves]
    if truth is _Truth.MET and not s.inputs:
        reasons.append("no instance is an input yet (no candidate has a location "
                       f"{s.accept_words}); a workitem is never READY with no input")
    missing: frozenset[str] = frozenset()
    not_available: frozenset[str] = frozenset()
    if readiness is not Readiness.READY:
        for o in leaves:
            if o.truth is not _Truth.MET:
                missing |= o.missing
                not_available |= o.not_available
    due = None
    if facts.last_ian_at is not None:
        for when in sorted(t for t in _settle_times(policy.complete_when, facts.last_ian_at) if t > facts.now):
            if _readiness(_truth(policy.complete_when, s, when, []), s) is not readiness:
                due = when
                break
    return Evaluation(policy.name, readiness, s.inputs, tuple(sorted(missing)), tuple(sorted(not_available)),
                      tuple(reasons), due)


def decide(policy: Policy, ups_state: str, current_readiness: str | None,
           evaluation: Evaluation) -> Decision | None:
    """What to write into a workitem after `evaluate`, or None to leave it untouched.

    Only SCHEDULED workitems change: IN PROGRESS, COMPLETED and CANCELED ones are never touched. A READY
    workitem whose evaluation is no longer READY (a downgrade: an input went OFFLINE or UNAVAILABLE, or an
    MPPS now expects instances not yet available) follows `on_downgrade`: INCOMPLETE or UNAVAILABLE, or
    "ignore" (it stays READY with its Input Information unchanged). Otherwise the evaluation is written."""
    if str(ups_state).strip() != "SCHEDULED":
        return None
    if evaluation.readiness is Readiness.READY:
        return Decision(Readiness.READY, evaluation.inputs, "; ".join(evaluation.reasons))
    if current_readiness is not None and str(current_readiness).strip() == Readiness.READY:
        if policy.on_downgrade is OnDowngrade.IGNORE:
            return None
        return Decision(Readiness(policy.on_downgrade.value), evaluation.inputs,
                        f"downgrade from READY (on_downgrade = {policy.on_downgrade.value}): "
                        + "; ".join(evaluation.reasons))
    return Decision(evaluation.readiness, evaluation.inputs, "; ".join(evaluation.reasons))


# --- loading -------------------------------------------------------------------------------------------

class _Bad(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason


_CS_RE = re.compile(r"^[A-Z0-9 _]{1,16}$")
_CONDITION_KEYS = ("all_of", "any_of", "expected_set_available", "expected_set_known", "expected_count",
                   "listed_instances_available", "settled")
_POLICY_KEYS = ("name", "description", "order", "applies_to", "inputs", "complete_when", "on_downgrade")
_SELECTOR_KEYS = ("accession_numbers", "scheduled_workitem_codes", "worklist_labels", "link_by_accession_number")
_INPUT_KEYS = ("sop_class_uids", "accepted_availability", "preferred_retrieve_aes", "restrict_to_expected_set")
_TEMPLATE_KEYS = ("name", "description", "conditions", "creates")
_TEMPLATE_CONDITION_KEYS = ("modalities", "sop_class_uids", "calling_ae_titles", "procedure_codes",
                            "study_description")
_CREATES_KEYS = ("scheduled_workitem_code", "procedure_step_label", "station_name_code", "priority",
                 "worklist_label", "start_delay")


def _at(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(key, f"expected a table, got {_kind(value)}")
    return value


def _keys(tbl: dict[str, Any], key: str, allowed: Sequence[str]) -> None:
    for k in tbl:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _Bad(_at(key, k), f"unknown key{hint} (allowed here: {', '.join(allowed)})")


def _string(tbl: dict[str, Any], name: str, key: str, *, required: bool = False, default: str | None = None,
            max_len: int = 64) -> str | None:
    where = _at(key, name)
    if name not in tbl:
        if required:
            raise _Bad(where, "required key is missing")
        return default
    value = tbl[name]
    return _text(value, where, max_len)


def _text(value: Any, where: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise _Bad(where, f"expected a string, got {_kind(value)}")
    if not value.strip():
        raise _Bad(where, "must not be empty")
    if len(value) > max_len:
        raise _Bad(where, f"at most {max_len} characters, got {len(value)}")
    return value.strip()


def _bool(tbl: dict[str, Any], name: str, key: str, default: bool) -> bool:
    if name not in tbl:
        return default
    if not isinstance(tbl[name], bool):
        raise _Bad(_at(key, name), f"expected true or false, got {_kind(tbl[name])}")
    return tbl[name]


def _seconds(value: Any, where: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(where, f"expected a number of seconds, got {_kind(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise _Bad(where, "expected a finite number of seconds")
    if positive and value <= 0:
        raise _Bad(where, f"must be more than 0 seconds, got {value}")
    if value < 0:
        raise _Bad(where, f"must not be negative, got {value}")
    return float(value)


def _list(tbl: dict[str, Any], name: str, key: str) -> list[tuple[str, Any]]:
    """(key path, value) of each element of an optional list."""
    if name not in tbl:
        return []
    value = tbl[name]
    where = _at(key, name)
    if not isinstance(value, list):
        raise _Bad(where, f"expected a list, got {_kind(value)}")
    return [(_at(where, i), v) for i, v in enumerate(value)]


def _no_duplicates(items: list[tuple[str, Any]]) -> None:
    seen: dict[Any, str] = {}
    for where, value in items:
        marker = value.key if isinstance(value, Code) else value
        if marker in seen:
            shown = value if isinstance(value, Code) else repr(value)
            raise _Bad(where, f"{shown} is listed twice (also at {seen[marker]})")
        seen[marker] = where


def _strings(tbl: dict[str, Any], name: str, key: str, check=None, max_len: int = 64) -> tuple[str, ...]:
    out = []
    for where, value in _list(tbl, name, key):
        text = _text(value, where, max_len)
        if check is not None:
            check(text, where)
        out.append((where, text))
    _no_duplicates(out)
    return tuple(v for _, v in out)


def _enum(value: Any, where: str, kind: type[StrEnum]) -> Any:
    allowed = [m.value for m in kind]
    if not isinstance(value, str) or value not in allowed:
        got = _kind(value)
        hint = ""
        if isinstance(value, str) and value.strip().upper() in (a.upper() for a in allowed):
            hint = " (values are case-sensitive)"
        raise _Bad(where, f"expected one of {', '.join(repr(a) for a in allowed)}, got {got}{hint}")
    return kind(value)


def _code(value: Any, where: str, *, meaning_required: bool) -> Code:
    tbl = _table(value, where)
    _keys(tbl, where, ("value", "scheme", "meaning"))
    code_value = _string(tbl, "value", where, required=True)
    scheme = _string(tbl, "scheme", where, required=True, max_len=16)
    meaning = _string(tbl, "meaning", where, required=meaning_required, default="")
    return Code(code_value, scheme, meaning or "")


def _codes(tbl: dict[str, Any], name: str, key: str) -> tuple[Code, ...]:
    items = [(where, _code(v, where, meaning_required=False)) for where, v in _list(tbl, name, key)]
    _no_duplicates(items)
    return tuple(c for _, c in items)


def _check_sop_class(uid: str, where: str) -> None:
    if not is_uid(uid):
        raise _Bad(where, f"{uid!r} is not a valid UID (digits and dots, no leading zeros, at most 64 characters)")
    from pydicom.uid import UID_dictionary

    entry = UID_dictionary.get(uid)
    if entry is not None and entry[1] != "SOP Class":
        raise _Bad(where, f"{uid} is {entry[0]} (a {entry[1]}), not a SOP Class")


def _check_ae(title: str, where: str) -> None:
    if not is_ae_title(title):
        raise _Bad(where, f"{title!r} is not a valid AE title (1-16 characters, no backslash)")


def _check_modality(value: str, where: str) -> None:
    if not _CS_RE.match(value):
        raise _Bad(where, f"{value!r} is not a Modality code string (upper-case letters, digits, space or "
                          "underscore, at most 16), e.g. 'CT'")


def _check_pattern(value: str, where: str) -> None:
    if value.strip("*") == "" and value != "*":
        raise _Bad(where, "a pattern of asterisks only; write '*' or leave the list out")


def _condition(value: Any, where: str) -> Condition:
    tbl = _table(value, where)
    _keys(tbl, where, _CONDITION_KEYS)
    if len(tbl) != 1:
        if not tbl:
            raise _Bad(where, f"an empty condition; write one of {', '.join(_CONDITION_KEYS)}")
        raise _Bad(where, f"a condition has exactly one key, got {', '.join(tbl)}; combine conditions with "
                          "all_of = [...] or any_of = [...]")
    (name, arg), = tbl.items()
    at = _at(where, name)
    if name in ("all_of", "any_of"):
        if not isinstance(arg, list):
            raise _Bad(at, f"expected a list of conditions, got {_kind(arg)}")
        if not arg:
            raise _Bad(at, "an empty list of conditions")
        parts = tuple(_condition(v, _at(at, i)) for i, v in enumerate(arg))
        return AllOf(parts) if name == "all_of" else AnyOf(parts)
    if name in ("expected_set_available", "listed_instances_available"):
        if arg is not True:
            raise _Bad(at, f"expected true, got {_kind(arg)} (conditions cannot be negated"
                           + ("; to require that no MPPS is known, use expected_set_known = false)"
                              if name == "expected_set_available" else ")"))
        return ExpectedSetAvailable() if name == "expected_set_available" else ListedInstancesAvailable()
    if name == "expected_set_known":
        if not isinstance(arg, bool):
            raise _Bad(at, f"expected true or false, got {_kind(arg)}")
        return ExpectedSetKnown(arg)
    if name == "expected_count":
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise _Bad(at, f"expected a whole number of instances, got {_kind(arg)}")
        if arg < 1:
            raise _Bad(at, f"must be at least 1, got {arg}")
        return ExpectedCount(arg)
    return Settled(_seconds(arg, at, positive=True))


def _selector(value: Any, where: str) -> Selector:
    tbl = _table(value, where)
    _keys(tbl, where, _SELECTOR_KEYS)

    def pattern(text: str, at: str) -> None:
        _check_pattern(text, at)

    return Selector(
        accession_numbers=_strings(tbl, "accession_numbers", where, pattern, max_len=16),
        scheduled_workitem_codes=_codes(tbl, "scheduled_workitem_codes", where),
        worklist_labels=_strings(tbl, "worklist_labels", where, pattern),
        link_by_accession_number=_bool(tbl, "link_by_accession_number", where, False),
    )


def _inputs(value: Any, where: str) -> InputRules:
    tbl = _table(value, where)
    _keys(tbl, where, _INPUT_KEYS)
    sop_classes = _strings(tbl, "sop_class_uids", where, _check_sop_class)
    accepted: list[Availability] = [Availability.ONLINE]
    if "accepted_availability" in tbl:
        items = _list(tbl, "accepted_availability", where)
        at = _at(where, "accepted_availability")
        if not items:
            raise _Bad(at, "must name at least one availability, e.g. [\"ONLINE\"]")
        accepted = []
        for item_at, v in items:
            a = _enum(v, item_at, Availability)
            if a is Availability.UNAVAILABLE:
                raise _Bad(item_at, "UNAVAILABLE cannot be accepted: an instance UNAVAILABLE at an AE cannot "
                                    "be retrieved from it")
            if a in accepted:
                raise _Bad(item_at, f"{a.value} is listed twice")
            accepted.append(a)
        for a in accepted:
            better = [b for b in Availability if b.rank < a.rank and b not in accepted]
            if better:
                raise _Bad(at, f"{a.value} is accepted but the better {better[0].value} is not; accept every "
                               f"availability down to the worst one wanted (e.g. [\"ONLINE\", \"NEARLINE\"])")
    return InputRules(
        sop_class_uids=sop_classes,
        accepted_availability=frozenset(accepted),
        preferred_retrieve_aes=_strings(tbl, "preferred_retrieve_aes", where, _check_ae, max_len=16),
        restrict_to_expected_set=_bool(tbl, "restrict_to_expected_set", where, True),
    )


def _policy(value: Any, where: str, source: str) -> Policy:
    tbl = _table(value, where)
    _keys(tbl, where, _POLICY_KEYS)
    name = _string(tbl, "name", where, required=True)
    description = _string(tbl, "description", where, default="", max_len=10_000) or ""
    order = tbl.get("order", DEFAULT_ORDER)
    if isinstance(order, bool) or not isinstance(order, int):
        raise _Bad(_at(where, "order"), f"expected a whole number, got {_kind(order)}")
    applies_to = _selector(tbl.get("applies_to", {}), _at(where, "applies_to"))
    inputs = _inputs(tbl.get("inputs", {}), _at(where, "inputs"))
    if "complete_when" not in tbl:
        raise _Bad(_at(where, "complete_when"), "required key is missing (when are the inputs complete?)")
    complete_when = _condition(tbl["complete_when"], _at(where, "complete_when"))
    on_downgrade = _enum(tbl.get("on_downgrade", "INCOMPLETE"), _at(where, "on_downgrade"), OnDowngrade)
    return Policy(name=name, description=description, order=order, applies_to=applies_to, inputs=inputs,
                  complete_when=complete_when, on_downgrade=on_downgrade, source=source)


def _template(value: Any, where: str, source: str) -> Template:
    tbl = _table(value, where)
    _keys(tbl, where, _TEMPLATE_KEYS)
    name = _string(tbl, "name", where, required=True)
    description = _string(tbl, "description", where, default="", max_len=10_000) or ""
    cw = _at(where, "conditions")
    ctbl = _table(tbl.get("conditions", {}), cw)
    _keys(ctbl, cw, _TEMPLATE_CONDITION_KEYS)
    regex = _string(ctbl, "study_description", cw, max_len=1000)
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise _Bad(_at(cw, "study_description"), f"not a valid regular expression: {exc}") from None
    conditions = TemplateConditions(
        modalities=_strings(ctbl, "modalities", cw, _check_modality, max_len=16),
        sop_class_uids=_strings(ctbl, "sop_class_uids", cw, _check_sop_class),
        calling_ae_titles=_strings(ctbl, "calling_ae_titles", cw, _check_ae, max_len=16),
        procedure_codes=_codes(ctbl, "procedure_codes", cw),
        study_description=regex,
    )
    kw = _at(where, "creates")
    if "creates" not in tbl:
        raise _Bad(kw, "required key is missing (what workitem does the template create?)")
    ktbl = _table(tbl["creates"], kw)
    _keys(ktbl, kw, _CREATES_KEYS)
    if "scheduled_workitem_code" not in ktbl:
        raise _Bad(_at(kw, "scheduled_workitem_code"), "required key is missing")
    creates = WorkitemSpec(
        scheduled_workitem_code=_code(ktbl["scheduled_workitem_code"], _at(kw, "scheduled_workitem_code"),
                                      meaning_required=True),
        procedure_step_label=_string(ktbl, "procedure_step_label", kw, required=True),
        station_name_code=(_code(ktbl["station_name_code"], _at(kw, "station_name_code"), meaning_required=True)
                           if "station_name_code" in ktbl else None),
        priority=_enum(ktbl.get("priority", "MEDIUM"), _at(kw, "priority"), Priority),
        worklist_label=_string(ktbl, "worklist_label", kw),
        start_delay=_seconds(ktbl.get("start_delay", 0), _at(kw, "start_delay"), positive=False),
    )
    return Template(name=name, conditions=conditions, creates=creates, description=description, source=source)


def _document(data: dict[str, Any], file: str, problems: list[Problem]) -> tuple[list[tuple], list[tuple]]:
    """Policies and templates of one parsed file: ([(policy, key, position)], [(template, key)])."""
    policies: list[tuple] = []
    templates: list[tuple] = []
    try:
        _keys(data, "", ("version", "policy", "template"))
        version = data.get("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise _Bad("version", f"this server reads policy files of version {SCHEMA_VERSION}, got {_kind(version)}")
        for kind in ("policy", "template"):
            if kind in data and not (isinstance(data[kind], list) and all(isinstance(x, dict) for x in data[kind])):
                got = "a list of other values" if isinstance(data[kind], list) else _kind(data[kind])
                raise _Bad(kind, f"expected [[{kind}]] tables (an array of tables), got {got}; "
                                 f"write [[{kind}]] with two brackets")
    except _Bad as exc:
        problems.append(Problem(file, exc.key, exc.reason))
        return policies, templates
    for i, item in enumerate(data.get("policy", [])):
        where = f"policy[{i}]"
        try:
            policies.append((_policy(item, where, f"{file}: {where}"), where, i))
        except _Bad as exc:
            problems.append(Problem(file, exc.key, exc.reason))
    for i, item in enumerate(data.get("template", [])):
        where = f"template[{i}]"
        try:
            templates.append((_template(item, where, f"{file}: {where}"), where))
        except _Bad as exc:
            problems.append(Problem(file, exc.key, exc.reason))
    return policies, templates


def _read(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(Problem(str(path), "", "policy file not found"))
    except IsADirectoryError:
        problems.append(Problem(str(path), "", "is a directory, not a policy file"))
    except OSError as exc:
        problems.append(Problem(str(path), "", f"cannot read: {exc.strerror or exc}"))
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(path), "", f"not UTF-8 text: {exc}"))
    except tomllib.TOMLDecodeError as exc:
        problems.append(Problem(str(path), "", f"not valid TOML: {exc}"))
    return None


def load_policies(paths: Path | str | Sequence[Path | str]) -> PolicySet:
    """Load a complete PolicySet from a directory (every `*.toml` in it, by file name) or from files (in
    the order given), or raise PolicyError naming the file, the key path and the reason. Never returns a
    partial set: a caller reloading on SIGHUP keeps its old set when this raises."""
    if isinstance(paths, (str, Path)):
        path = Path(paths)
        if path.is_dir():
            files = sorted(path.glob("*.toml"))
            if not files:
                raise PolicyError(str(path), "", "no *.toml policy file in this directory")
            label = str(path)
        else:
            files, label = [path], str(path)
    else:
        files = [Path(p) for p in paths]
        if not files:
            raise PolicyError("(no file)", "", "no policy file given")
        label = ", ".join(str(f) for f in files)
    problems: list[Problem] = []
    docs = []
    for f in files:
        data = _read(f, problems)
        if data is not None:
            docs.append((str(f), data))
    return _assemble(docs, label, problems)


def loads_policies(text: str, file: str = "<string>") -> PolicySet:
    """Load a PolicySet from the text of one policy file (as `load_policies` does for a file)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(file, "", f"not valid TOML: {exc}") from None
    return _assemble([(file, data)], file, [])


def _assemble(docs: list[tuple[str, dict[str, Any]]], label: str, problems: list[Problem]) -> PolicySet:
    entries: list[tuple[Policy, str, str, tuple[int, int]]] = []  # policy, file, key, (file index, position)
    templates: list[tuple[Template, str, str]] = []
    for index, (file, data) in enumerate(docs):
        ps, ts = _document(data, file, problems)
        entries += [(p, file, key, (index, pos)) for p, key, pos in ps]
        templates += [(t, file, key) for t, key in ts]
    for kind, items in (("policy", [(p.name, f, k) for p, f, k, _ in entries]),
                        ("template", [(t.name, f, k) for t, f, k in templates])):
        first: dict[str, tuple[str, str]] = {}
        for name, file, key in items:
            if name in first:
                other_file, other_key = first[name]
                problems.append(Problem(file, f"{key}.name", f"duplicate {kind} name {name!r} "
                                                             f"(also {other_file}: {other_key})"))
            else:
                first[name] = (file, key)
    entries.sort(key=lambda e: (e[0].order, e[3]))
    fallback = next((e for e in entries if e[0].applies_to.matches_everything), None)
    if fallback is None and not problems:
        problems.append(Problem(label, "policy", "no fallback policy: one policy must match every workitem "
                                                 "(a policy with no accession_numbers, "
                                                 "scheduled_workitem_codes or worklist_labels in applies_to), "
                                                 "like the shipped default.toml"))
    if fallback is not None:
        cut = entries.index(fallback)
        for p, file, key, _ in entries[cut + 1:]:
            problems.append(Problem(file, f"{key}.order",
                                    f"policy {p.name!r} can never be selected: the fallback policy "
                                    f"{fallback[0].name!r} ({fallback[0].source}, order {fallback[0].order}) "
                                    f"matches every workitem and comes first; give {p.name!r} a lower order"))
    if problems:
        first_problem = problems[0]
        raise PolicyError(first_problem.file, first_problem.key, first_problem.reason, problems)
    return PolicySet(policies=tuple(e[0] for e in entries), templates=tuple(t for t, _, _ in templates),
                     sources=tuple(f for f, _ in docs))


# --- description for the conformance statement ----------------------------------------------------------

def _secs(seconds: float) -> str:
    s = int(seconds) if float(seconds).is_integer() else seconds
    if isinstance(s, int) and s >= 60 and s % 60 == 0:
        minutes = s // 60
        return f"{s} s ({minutes // 60} h)" if minutes % 60 == 0 else f"{s} s ({minutes} min)"
    return f"{s} s"


def _sop_class(uid: str) -> str:
    from pydicom.uid import UID_dictionary

    entry = UID_dictionary.get(uid)
    return f"{entry[0]} ({uid})" if entry else f"{uid} (a SOP Class not in the DICOM dictionary)"


@functools.lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def _words(cond: Condition, rules: InputRules, depth: int = 0) -> list[str]:
    pad = "  " * depth
    accepted = " or ".join(a.value for a in sorted(rules.accepted_availability, key=lambda a: a.rank))
    if isinstance(cond, (AllOf, AnyOf)):
        head = "all of:" if isinstance(cond, AllOf) else "any of:"
        lines = [f"{pad}- {head}"]
        for c in cond.conditions:
            lines += _words(c, rules, depth + 1)
        return lines
    if isinstance(cond, ExpectedSetAvailable):
        text = ("every instance of the study's expected set (the union of the Performed Series Sequence of "
                f"its COMPLETED MPPS) is available {accepted} at some Retrieve AE Title")
    elif isinstance(cond, ExpectedSetKnown):
        text = ("an expected set is known (a COMPLETED MPPS of the study has been received)" if cond.known
                else "no expected set is known (no COMPLETED MPPS of the study has been received)")
    elif isinstance(cond, ExpectedCount):
        text = f"at least {cond.count} instance{'s' if cond.count != 1 else ''} are available {accepted}"
    elif isinstance(cond, ListedInstancesAvailable):
        text = ("every instance already listed in the workitem's Input Information Sequence is available "
                f"{accepted}")
    else:
        text = (f"no IAN for the study has been received for {_secs(cond.seconds)} and every known instance "
                f"of the study (except those UNAVAILABLE everywhere) is available {accepted}")
    return [f"{pad}- {text}"]


def _describe_policy(p: Policy) -> str:
    sel, rules = p.applies_to, p.inputs
    who = []
    if sel.accession_numbers:
        who.append("Accession Number matching " + " or ".join(f"`{a}`" for a in sel.accession_numbers))
    if sel.scheduled_workitem_codes:
        who.append("Scheduled Workitem Code " + " or ".join(str(c) for c in sel.scheduled_workitem_codes))
    if sel.worklist_labels:
        who.append("Worklist Label matching " + " or ".join(f"`{w}`" for w in sel.worklist_labels))
    link = "the same Study Instance UID"
    if sel.link_by_accession_number:
        link += " or an Accession Number named by one of the study's MPPS"
    applies = (f"workitems with {link}" + (" and " + " and ".join(who) if who else
                                           " (every workitem not taken by an earlier policy)"))
    accepted = " or ".join(a.value for a in sorted(rules.accepted_availability, key=lambda a: a.rank))
    classes = ("instances of any SOP Class" if not rules.sop_class_uids else
               "instances of " + ", ".join(_sop_class(u) for u in rules.sop_class_uids))
    restrict = (" When an expected set is known, only its instances are inputs."
                if rules.restrict_to_expected_set else
                " Instances outside the expected set are inputs as well.")
    prefer = (" The Retrieve AE Title named is chosen in this order of preference: "
              + ", ".join(f"`{a}`" for a in rules.preferred_retrieve_aes) + ", then any other; between "
              "equals, the location with the best availability, then the most recently notified one."
              if rules.preferred_retrieve_aes else
              " The Retrieve AE Title named is the location with the best availability, then the most "
              "recently notified one.")
    downgrade = {
        OnDowngrade.INCOMPLETE: "a SCHEDULED workitem that was READY goes back to INCOMPLETE",
        OnDowngrade.UNAVAILABLE: "a SCHEDULED workitem that was READY goes to UNAVAILABLE",
        OnDowngrade.IGNORE: "a SCHEDULED workitem that was READY stays READY with its Input Information unchanged",
    }[p.on_downgrade]
    lines = [f"#### Policy `{p.name}` (order {p.order}; {p.source})", ""]
    if p.description:
        lines += [p.description, ""]
    lines += [
        f"- **Applies to:** {applies}.",
        f"- **Inputs:** {classes}, with a location {accepted}.{restrict}{prefer}",
        "- **Complete (READY) when:**",
        *["  " + line for line in _words(p.complete_when, rules)],
        f"- **On a downgrade** (an input OFFLINE or UNAVAILABLE, or an MPPS expecting instances not yet "
        f"available): {downgrade}. IN PROGRESS, COMPLETED and CANCELED workitems are never changed.",
        "",
    ]
    return "\n".join(lines)


def _describe_template(t: Template) -> str:
    c, k = t.conditions, t.creates
    when = []
    if c.modalities:
        when.append("Modality " + " or ".join(c.modalities))
    if c.sop_class_uids:
        when.append("an instance of " + " or ".join(_sop_class(u) for u in c.sop_class_uids))
    if c.calling_ae_titles:
        when.append("announced by calling AE " + " or ".join(f"`{a}`" for a in c.calling_ae_titles))
    if c.procedure_codes:
        when.append("Procedure Code " + " or ".join(str(p) for p in c.procedure_codes))
    if c.study_description is not None:
        when.append(f"Study Description matching the regular expression `{c.study_description}`")
    lines = [f"#### Template `{t.name}` ({t.source})", ""]
    if t.description:
        lines += [t.description, ""]
    lines += [
        "- **When** a study becomes available with " + (" and ".join(when) if when else "any content") + ":",
        f"  a SCHEDULED workitem is created with Scheduled Workitem Code {k.scheduled_workitem_code}, "
        f"Procedure Step Label \"{k.procedure_step_label}\", priority {k.priority.value}, Worklist Label "
        + (f"\"{k.worklist_label}\"" if k.worklist_label else "the server's default")
        + (f", Scheduled Station Name Code {k.station_name_code}" if k.station_name_code else "")
        + f" and Scheduled Procedure Step Start DateTime = now + {_secs(k.start_delay)}.",
        "- At most one workitem per study and template (its SOP Instance UID is derived from both).",
        "",
    ]
    return "\n".join(lines)


def describe(policy_set: PolicySet) -> str:
    """Markdown describing how notifications drive workflow (PS3.4 R.1.1), for the conformance statement."""
    out = [
        "### Workflow policies",
        "",
        "Instance Availability Notifications and MPPS drive the Input Information Sequence and Input "
        "Readiness State of UPS workitems as the site's policy files say"
        + (f" (loaded from {', '.join(f'`{s}`' for s in policy_set.sources)})" if policy_set.sources else "")
        + ". For each SCHEDULED workitem of a study that changes, the first policy below whose selector "
        "matches the workitem applies.",
        "",
        "- Readiness: READY when the policy's completion condition holds and at least one instance is an "
        "input; UNAVAILABLE when every instance the condition needs has been announced but some have no "
        "location at an accepted availability; INCOMPLETE otherwise (in particular while an instance the "
        "condition needs has not been announced by any IAN, or no MPPS is known and the settle time has "
        "not passed). Every IAN for the study restarts a settle time.",
        "- The expected set of a study is the union of the Performed Series Sequence of its COMPLETED MPPS.",
        "- The result depends only on what is known, never on the order in which notifications arrived.",
        "- Workitems IN PROGRESS, COMPLETED or CANCELED are never changed by a notification.",
        "",
    ]
    out += [_describe_policy(p) for p in policy_set.policies]
    if policy_set.templates:
        out += [_describe_template(t) for t in policy_set.templates]
    else:
        out += ["No template is enabled: notifications never create workitems.", ""]
    return "\n".join(out)
