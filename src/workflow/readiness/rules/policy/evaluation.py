"""Evaluation: what a policy says of a workitem, given the facts (pure: no database, no clock).

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
* `evaluate_readiness` is a pure function of `Facts`: instances and locations are put in a canonical
  order when the facts are built, ties are broken on values, so the order in which IANs arrived never
  matters.
* `readiness_change` never touches a workitem that is not SCHEDULED (IN PROGRESS, COMPLETED, CANCELED).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from functools import cached_property
from typing import AbstractSet as Set, Callable, Iterable, Mapping

from workflow.ian.rules.availability import Availability
from workflow.readiness.rules.policy.facts import Facts, InstanceFacts
from workflow.readiness.rules.policy.model import (AllOf, AnyOf, Condition, ExpectedCount, ExpectedSetAvailable,
                                                   ExpectedSetKnown, InputRules, ListedInstancesAvailable,
                                                   OnDowngrade, Policy, Readiness, Settled)
from workflow.readiness.rules.policy.words import seconds_text, uid_list


@dataclass(frozen=True)
class Input:
    """One item for the Input Information Sequence: the instance and the location chosen for it."""

    instance: InstanceFacts
    ae_title: str
    retrieve_url: str | None
    availability: Availability
    file_set_id: str | None = None
    file_set_uid: str | None = None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """readiness: what complete_when says. inputs: the instances to list (sorted by series, instance),
    from `inputs_by_uid`. missing: SOP Instance UIDs a failing condition needs that are not inputs
    (empty when READY), sorted. not_available: those of `missing` that were announced but have no
    accepted location, sorted. reasons: one line per condition, in the order of the policy.
    settle_due_at: see `evaluate_readiness`.

    The lists and the words are made only when asked (`wfm explain`, the tests): a pass writes the
    inputs as rows (the order is the reader's), and during a burst of IANs it has up to the whole study
    missing. In a worker's pass they are made from the Choices' own sets: valid only during the pass."""

    policy: str
    readiness: Readiness
    # The inputs by SOP Instance UID. In a worker's pass, the Choices' own mapping: read only, and
    # valid only during the pass (the Choices change with the next IANs).
    inputs_by_uid: Mapping[str, Input]
    settle_due_at: datetime | None
    leaves: tuple[_Outcome, ...]  # each condition's outcome, in the order of the policy
    notes: tuple[str, ...] = ()  # reasons after the conditions'

    @cached_property
    def missing_uids(self) -> frozenset[str]:
        return self._failing(lambda o: o.missing)

    @cached_property
    def not_available_uids(self) -> frozenset[str]:
        return self._failing(lambda o: o.not_available)

    def _failing(self, sets: Callable[[_Outcome], tuple[Set[str], ...]]) -> frozenset[str]:
        if self.readiness is Readiness.READY:
            return frozenset()
        return frozenset().union(*(part for o in self.leaves if o.truth is not _Truth.MET for part in sets(o)))

    @cached_property
    def reasons(self) -> tuple[str, ...]:
        return tuple(o.reason for o in self.leaves) + self.notes

    @cached_property
    def inputs(self) -> tuple[Input, ...]:
        return in_order(self.inputs_by_uid)

    @cached_property
    def missing(self) -> tuple[str, ...]:
        return tuple(sorted(self.missing_uids))

    @cached_property
    def not_available(self) -> tuple[str, ...]:
        return tuple(sorted(self.not_available_uids))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evaluation):
            return NotImplemented
        return self._compared() == other._compared()

    def _compared(self) -> tuple:
        return (self.policy, self.readiness, dict(self.inputs_by_uid), self.missing_uids, self.not_available_uids,
                self.reasons, self.settle_due_at)


@dataclass(frozen=True)
class ReadinessChange:
    """What to write into a SCHEDULED workitem: its Input Readiness State and Input Information."""

    readiness: Readiness
    inputs_by_uid: Mapping[str, Input] = field(hash=False)  # as `Evaluation.inputs_by_uid`
    evaluation: Evaluation = field(compare=False, repr=False)
    prefix: str = ""  # said before the evaluation's reasons

    @cached_property
    def inputs(self) -> tuple[Input, ...]:
        return in_order(self.inputs_by_uid)

    @property
    def reason(self) -> str:
        return self.prefix + "; ".join(self.evaluation.reasons)


def in_order(by_uid: Mapping[str, Input]) -> tuple[Input, ...]:
    """Inputs by Series Instance UID, then SOP Instance UID."""
    return tuple(sorted(by_uid.values(), key=lambda i: (i.instance.series_instance_uid, i.instance.sop_instance_uid)))


class _Truth(IntEnum):
    INCOMPLETE = 0
    UNAVAILABLE = 1
    MET = 2


@dataclass(frozen=True)
class _Outcome:
    """One condition's truth. Its words and its sets of instances are what an operator reads (`wfm
    explain`): the words may be a function, called only when read, and the sets may be a `Choices`'
    own (read only, valid while the Choices stay unchanged), so a pass does not name or copy the
    instances a large study still misses."""

    truth: _Truth
    text: str | Callable[[], str]
    missing: tuple[Set[str], ...] = ()  # their union
    not_available: tuple[Set[str], ...] = ()

    @property
    def reason(self) -> str:
        return self.text if isinstance(self.text, str) else self.text()


class Choices:
    """What one policy's input rules make of each instance of a study, and what the evaluation asks of
    them, kept up to date one changed instance at a time (incremental evaluation): whether its SOP class
    is allowed, the location `_choose` picks, and the sets the conditions read (the candidates, the
    inputs, the expected instances missing, those waiting for an accepted location). A pass then costs
    what its changed instances cost, whatever the study's size. `evaluate_readiness(policy, facts,
    choices)` gives the same Evaluation as without `choices` as long as the choices were fed exactly
    `facts.instances` and were made for `facts.expected` (fixed for their life: an MPPS makes the
    caller read the study whole, and new Choices)."""

    def __init__(self, rules: InputRules, instances: Iterable[InstanceFacts] = (),
                 expected: frozenset[str] | None = None) -> None:
        self.rules = rules
        self.expected = expected
        self._restrict = expected is not None and rules.restrict_to_expected_set
        self.known: dict[str, InstanceFacts] = {}
        self.filtered_out: set[str] = set()
        self.allowed: set[str] = set()  # known - filtered_out
        self.withdrawn: set[str] = set()  # known and UNAVAILABLE everywhere
        self.accepted: dict[str, Input] = {}
        # Derived, each kept for the instances that change (`_derive`):
        self.candidates: set[str] = set()  # allowed, and expected when the rules restrict to it
        self.inputs: dict[str, Input] = {}  # the accepted candidates
        self.waiting: set[str] = set()  # candidates neither accepted nor withdrawn
        self.withdrawn_candidates: set[str] = set()
        self.unannounced: set[str] = set(expected or ())  # expected, not known
        self.unavailable: set[str] = set()  # expected, known, allowed, not accepted
        self.expected_filtered: set[str] = set()  # expected and filtered out
        self._log: list[str] = []  # every instance put or dropped, in order (`changed_since`)
        for inst in instances:
            self.put(inst)

    def mark(self) -> tuple[list[str], int]:
        """Where the history of changes stands now (for `changed_since`)."""
        return self._log, len(self._log)

    def changed_since(self, mark: tuple[list[str], int] | None) -> set[str] | None:
        """The instances put or dropped since `mark`: only their inputs can differ from what they were
        then (for a study's fixed expected set). None when that is no longer known: ask about all."""
        if mark is None or mark[0] is not self._log:
            return None
        return set(self._log[mark[1]:])

    def _changed(self, uid: str) -> None:
        if len(self._log) > 2 * len(self.known) + 10_000:  # the history outgrew the study: start a new one
            self._log = []
        self._log.append(uid)

    def put(self, inst: InstanceFacts) -> None:
        """An instance new or changed (its class, series or locations)."""
        uid = inst.sop_instance_uid
        self._changed(uid)
        self.known[uid] = inst
        self.accepted.pop(uid, None)
        (self.withdrawn.add if inst.withdrawn else self.withdrawn.discard)(uid)
        if not self.rules.allows(inst.sop_class_uid):
            self.filtered_out.add(uid)
            self.allowed.discard(uid)
        else:
            self.filtered_out.discard(uid)
            self.allowed.add(uid)
            if (chosen := _choose(inst, self.rules)) is not None:
                self.accepted[uid] = chosen
        self._derive(uid)

    def drop(self, uid: str) -> None:
        """An instance no longer of the study (or with no location left)."""
        self._changed(uid)
        self.known.pop(uid, None)
        self.accepted.pop(uid, None)
        for kept in (self.filtered_out, self.allowed, self.withdrawn):
            kept.discard(uid)
        self._derive(uid)

    def _derive(self, uid: str) -> None:
        """The derived sets, for one instance, from what is kept of it."""
        expected = self.expected is not None and uid in self.expected
        candidate = uid in self.allowed and (expected or not self._restrict)
        chosen = self.accepted.get(uid)
        withdrawn = uid in self.withdrawn
        _keep(self.candidates, uid, candidate)
        if candidate and chosen is not None:
            self.inputs[uid] = chosen
        else:
            self.inputs.pop(uid, None)
        _keep(self.waiting, uid, candidate and chosen is None and not withdrawn)
        _keep(self.withdrawn_candidates, uid, candidate and withdrawn)
        if expected:
            _keep(self.unannounced, uid, uid not in self.known)
            _keep(self.unavailable, uid, uid in self.allowed and chosen is None)
            _keep(self.expected_filtered, uid, uid in self.filtered_out)


def _keep(kept: set[str], uid: str, member: bool) -> None:
    (kept.add if member else kept.discard)(uid)


class _Study:
    """The facts seen through one policy (independent of `now`): the `Choices`' sets, read only here
    (no loop over the instances and no operation over whole sets, so a pass costs no more for a large
    study than for a small one; `listed` alone is a set operation, for the policies that read it)."""

    def __init__(self, policy: Policy, facts: Facts, choices: Choices | None = None) -> None:
        rules = policy.inputs
        self.facts = facts
        self.accept_words = rules.accepted_words
        if choices is None:
            choices = Choices(rules, facts.instances, facts.expected)
        elif choices.expected is not facts.expected and choices.expected != facts.expected:
            raise ValueError("the Choices were made for another expected set")
        self.choices = choices
        self.known, self.filtered_out, self.accepted = choices.known, choices.filtered_out, choices.accepted
        self.candidates, self.inputs = choices.candidates, choices.inputs

    @cached_property
    def listed(self) -> frozenset[str]:
        return frozenset(self.facts.listed) - self.filtered_out

    def expected_required(self) -> _Outcome:
        """Every expected instance of an allowed SOP class must be accepted (`required`, from the kept
        sets: the expected instances not yet announced, and those announced but not accepted)."""
        c = self.choices
        n = len(c.expected) - len(c.expected_filtered)
        return self._required("expected_set_available", n, "expected instances", c.unannounced, c.unavailable)

    def required(self, name: str, required: frozenset[str], what: str) -> _Outcome:
        """All of `required` must be accepted: MET, else INCOMPLETE if one is unannounced, else UNAVAILABLE."""
        missing = required.difference(self.accepted)
        unannounced = missing.difference(self.known)
        return self._required(name, len(required), what, unannounced, missing - unannounced)

    def _required(self, name: str, n: int, what: str, unannounced: Set[str], unavailable: Set[str]) -> _Outcome:
        if not unannounced and not unavailable:
            return _Outcome(_Truth.MET, f"{name}: all {n} {what} are available {self.accept_words}")

        def words() -> str:
            parts = []
            if unannounced:
                parts.append(f"{len(unannounced)} of {n} {what} not yet announced by any IAN ({uid_list(unannounced)})")
            if unavailable:
                parts.append(f"{len(unavailable)} of {n} {what} announced but not available {self.accept_words} "
                             f"({self.states(unavailable)})")
            return f"{name}: " + "; ".join(parts)
        truth = _Truth.INCOMPLETE if unannounced else _Truth.UNAVAILABLE
        return _Outcome(truth, words, (unannounced, unavailable), (unavailable,))

    def states(self, uids: Iterable[str]) -> str:
        return uid_list(uids, lambda u: f"{u} {self.known[u].best_availability.value}")


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


def _leaf(cond: Condition, s: _Study, now: datetime) -> _Outcome:
    facts = s.facts
    if isinstance(cond, ExpectedSetAvailable):
        if facts.expected is None:
            return _Outcome(_Truth.INCOMPLETE, "expected_set_available: no expected set (no COMPLETED MPPS "
                                               "is known for the study)")
        return s.expected_required()
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
        waiting = s.choices.waiting
        truth = _Truth.UNAVAILABLE if have + len(waiting) >= cond.count else _Truth.INCOMPLETE
        extra = f"; {len(waiting)} more announced but not available {s.accept_words}" if waiting else ""
        return _Outcome(truth, f"expected_count = {cond.count}: {have} instances are inputs{extra}",
                        (waiting,), (waiting,))
    if isinstance(cond, Settled):
        return _settled(cond, s, now)
    raise TypeError(f"not a condition: {cond!r}")


def _settled(cond: Settled, s: _Study, now: datetime) -> _Outcome:
    last, name = s.facts.last_ian_at, f"settled = {seconds_text(cond.seconds)}"
    if last is None:
        return _Outcome(_Truth.INCOMPLETE, f"{name}: no IAN received for the study")
    due = last + timedelta(seconds=cond.seconds)
    if now < due:
        return _Outcome(_Truth.INCOMPLETE, f"{name}: last IAN at {last.isoformat()}, settles at {due.isoformat()}")
    considered = len(s.candidates) - len(s.choices.withdrawn_candidates)  # candidates not withdrawn
    if not considered:
        return _Outcome(_Truth.INCOMPLETE, f"{name}: settled, but no instance of the study is an input candidate")
    bad = s.choices.waiting  # the candidates not withdrawn and not accepted
    if bad:
        return _Outcome(_Truth.UNAVAILABLE, lambda: f"{name}: settled, but {len(bad)} of {considered} known "
                                                    f"instances are not available {s.accept_words} ({s.states(bad)})",
                        (bad,), (bad,))
    return _Outcome(_Truth.MET, f"{name}: no IAN since {last.isoformat()}; all {considered} known "
                                f"instances are available {s.accept_words}")


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


def evaluate_readiness(policy: Policy, facts: Facts, choices: Choices | None = None) -> Evaluation:
    """The readiness and inputs `policy` gives a workitem with `facts` (pure; see the module docstring).

    inputs: instances of an allowed SOP class (and of the expected set, when one is known and
    restrict_to_expected_set) with at least one location at an accepted availability, each with its
    chosen location (`_choose`). settle_due_at: the earliest time after `now` at which, with no new facts,
    the readiness would change because a `settled` condition matures; None if none would.
    choices: the policy's `Choices` for exactly `facts.instances`, kept by the caller between
    evaluations (the result is the same; only the work of choosing locations is saved)."""
    s = _Study(policy, facts, choices)
    leaves: list[_Outcome] = []
    truth = _truth(policy.complete_when, s, facts.now, leaves)
    readiness = _readiness(truth, s)
    notes = ()
    if truth is _Truth.MET and not s.inputs:
        notes = ("no instance is an input yet (no candidate has a location "
                 f"{s.accept_words}); a workitem is never READY with no input",)
    due = None
    if facts.last_ian_at is not None:
        for when in sorted(t for t in _settle_times(policy.complete_when, facts.last_ian_at) if t > facts.now):
            if _readiness(_truth(policy.complete_when, s, when, []), s) is not readiness:
                due = when
                break
    return Evaluation(policy.name, readiness, s.inputs, due, tuple(leaves), notes)


def readiness_change(policy: Policy, ups_state: str, current_readiness: str | None,
                     evaluation: Evaluation) -> ReadinessChange | None:
    """What to write into a workitem after `evaluate_readiness`, or None to leave it untouched.

    Only SCHEDULED workitems change: IN PROGRESS, COMPLETED and CANCELED ones are never touched. A READY
    workitem whose evaluation is no longer READY (a downgrade: an input went OFFLINE or UNAVAILABLE, or an
    MPPS now expects instances not yet available) follows `on_downgrade`: INCOMPLETE or UNAVAILABLE, or
    "ignore" (it stays READY with its Input Information unchanged). Otherwise the evaluation is written."""
    if str(ups_state).strip() != "SCHEDULED":
        return None
    if evaluation.readiness is Readiness.READY:
        return ReadinessChange(Readiness.READY, evaluation.inputs_by_uid, evaluation)
    if current_readiness is not None and str(current_readiness).strip() == Readiness.READY:
        if policy.on_downgrade is OnDowngrade.IGNORE:
            return None
        return ReadinessChange(Readiness(policy.on_downgrade.value), evaluation.inputs_by_uid, evaluation,
                               f"downgrade from READY (on_downgrade = {policy.on_downgrade.value}): ")
    return ReadinessChange(evaluation.readiness, evaluation.inputs_by_uid, evaluation)
