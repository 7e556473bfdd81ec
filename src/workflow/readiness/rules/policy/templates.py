"""Templates (`[[template]]`): a workitem created when a study matching conditions becomes available.
A template is checked condition by condition, so a template that does not fire can say which condition
failed and what the study's facts were (`wfm explain --study`, the readiness log)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from workflow.readiness.rules.policy.facts import StudyFacts
from workflow.readiness.rules.policy.modalities import study_modalities
from workflow.readiness.rules.policy.model import Code, Priority

_UUID_NAMESPACE = uuid.UUID("5b0f7a8e-3c1d-4e59-9a61-2f6d0c4b7e10")  # workitem UIDs of templates


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
class ConditionCheck:
    """One condition of a template against a study: its key in the file, whether it held, what the
    template asks for, what the study has, and all of that in words."""

    condition: str
    held: bool
    wanted: tuple[str, ...]
    found: tuple[str, ...]
    text: str

    def as_dict(self) -> dict:
        return {"condition": self.condition, "held": self.held, "wanted": list(self.wanted),
                "found": list(self.found), "text": self.text}


def _any_of(condition: str, label: str, wanted: Iterable[str], found: Iterable[str],
            source: str = "") -> ConditionCheck:
    wanted, found = tuple(wanted), tuple(sorted(set(found)))
    held = bool(set(wanted) & set(found))
    facts = f"{list(found) if found else 'unknown'}" + (f" ({source})" if source else "")
    return ConditionCheck(condition, held, wanted, found,
                          f"{label} {facts} {'is' if held else 'not'} in {list(wanted)}")


@dataclass(frozen=True)
class Template:
    name: str
    conditions: TemplateConditions
    creates: WorkitemSpec
    description: str = ""
    source: str = ""

    def check(self, study: StudyFacts) -> tuple[ConditionCheck, ...]:
        """Each condition the template gives, checked against the study (in the order of the README)."""
        c, out = self.conditions, []
        if c.modalities:
            found, source = study_modalities(study.modalities, study.sop_class_uids)
            out.append(_any_of("modalities", "modality", c.modalities, found, source))
        if c.sop_class_uids:
            out.append(_any_of("sop_class_uids", "SOP class", c.sop_class_uids, study.sop_class_uids))
        if c.calling_ae_titles:
            out.append(_any_of("calling_ae_titles", "calling AE", c.calling_ae_titles,
                               (a.strip() for a in study.calling_ae_titles)))
        if c.procedure_codes:
            out.append(_any_of("procedure_codes", "procedure code", (f"({v}, {s})" for v, s in
                                                                     (p.key for p in c.procedure_codes)),
                               (f"({v.strip()}, {s.strip()})" for v, s in study.procedure_codes)))
        if c._pattern is not None:
            text = study.study_description
            held = text is not None and c._pattern.search(text) is not None
            out.append(ConditionCheck("study_description", held, (c.study_description,),
                                      () if text is None else (text,),
                                      f"study description {text!r} {'matches' if held else 'does not match'} "
                                      f"/{c.study_description}/"))
        return tuple(out)

    def mismatches(self, study: StudyFacts) -> tuple[str, ...]:
        """Why the study does not match, one sentence per failed condition (empty: it matches)."""
        return tuple(check.text for check in self.check(study) if not check.held)

    def matches(self, study: StudyFacts) -> bool:
        return not self.mismatches(study)

    def start_at(self, now: datetime) -> datetime:
        """Scheduled Procedure Step Start DateTime of the workitem created at `now`."""
        return now + timedelta(seconds=self.creates.start_delay)

    def workitem_uid(self, study_instance_uid: str) -> str:
        """The SOP Instance UID of the workitem this template creates for a study: the same for the same
        template name and study, so creating it twice is a duplicate (idempotent per study and template)."""
        return f"2.25.{uuid.uuid5(_UUID_NAMESPACE, f'{self.name}|{study_instance_uid.strip()}').int}"
