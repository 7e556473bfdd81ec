"""A loaded set of policies and templates: which policy governs a workitem, which templates fire."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from workflow.readiness.rules.policy.facts import StudyFacts, WorkitemFacts
from workflow.readiness.rules.policy.model import Policy
from workflow.readiness.rules.policy.templates import Template


@dataclass(frozen=True)
class PolicySet:
    """Policies in selection order (ascending `order`, then file, then position) and templates (in file
    order). The last policy that can be selected matches every workitem (the fallback). `sources`: the
    files read."""

    policies: tuple[Policy, ...]
    templates: tuple[Template, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not any(p.applies_to.matches_everything for p in self.policies):
            raise ValueError("a PolicySet needs a policy whose applies_to matches every workitem")

    def select(self, workitem: WorkitemFacts) -> Policy:
        """The first policy whose selector matches the workitem (there is always one: the fallback)."""
        return next(p for p in self.policies if p.applies_to.matches(workitem))

    def policy_for(self, workitem: WorkitemFacts, study_instance_uid: str,
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

    def templates_for(self, study: StudyFacts) -> tuple[Template, ...]:
        return tuple(t for t in self.templates if t.matches(study))

    def policy(self, name: str) -> Policy:
        return next(p for p in self.policies if p.name == name)
