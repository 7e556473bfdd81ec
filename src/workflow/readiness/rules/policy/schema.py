"""The policy file format (policies/*.toml) as pydantic models: every key with its type, default and
checks, documented key by key in policies/README.md. pydantic walks a whole file and reports every
problem at once; `loading.py` words its errors as file / key / reason lines, and `build` turns a valid
file into the policy model."""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from workflow.ian.rules.availability import Availability
from workflow.kernel.attributes import is_ae_title, is_uid
from workflow.readiness.rules.policy.model import (DEFAULT_ORDER, AllOf, AnyOf, Code, Condition, ExpectedCount,
                                                   ExpectedSetAvailable, ExpectedSetKnown, InputRules,
                                                   ListedInstancesAvailable, OnDowngrade, Policy, Priority,
                                                   Selector, Settled)
from workflow.readiness.rules.policy.templates import Template, TemplateConditions, WorkitemSpec

SCHEMA_VERSION = 1


def problem(reason: str, **where: int) -> PydanticCustomError:
    """A validation error worded by us. `item=i`: it is about element i of the list being validated;
    `also=j`: element j holds the same value."""
    return PydanticCustomError("policy", "{reason}", {**where, "reason": reason})


def kind(value: Any) -> str:
    """What a TOML value is, for "expected ..., got ..." messages."""
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


# --- values --------------------------------------------------------------------------------------------

def _text(max_len: int, check: Callable[[str], None] | None = None) -> Any:
    """A non-empty string of at most `max_len` characters, stripped, then `check`ed."""
    def validate(value: Any) -> str:
        if not isinstance(value, str):
            raise problem(f"expected a string, got {kind(value)}")
        if not value.strip():
            raise problem("must not be empty")
        if len(value) > max_len:
            raise problem(f"at most {max_len} characters, got {len(value)}")
        if check is not None:
            check(value.strip())
        return value.strip()
    return Annotated[str, PlainValidator(validate)]


def _ae_title(title: str) -> None:
    if not is_ae_title(title):
        raise problem(f"{title!r} is not a valid AE title (1-16 characters, no backslash)")


def _sop_class(uid: str) -> None:
    if not is_uid(uid):
        raise problem(f"{uid!r} is not a valid UID (digits and dots, no leading zeros, at most 64 characters)")
    from pydicom.uid import UID_dictionary

    entry = UID_dictionary.get(uid)
    if entry is not None and entry[1] != "SOP Class":
        raise problem(f"{uid} is {entry[0]} (a {entry[1]}), not a SOP Class")


def _modality(value: str) -> None:
    if not re.fullmatch(r"[A-Z0-9 _]{1,16}", value):
        raise problem(f"{value!r} is not a Modality code string (upper-case letters, digits, space or "
                      "underscore, at most 16), e.g. 'CT'")


def _pattern(value: str) -> None:
    if value.strip("*") == "" and value != "*":
        raise problem("a pattern of asterisks only; write '*' or leave the list out")


def _regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise problem(f"not a valid regular expression: {exc}") from None


def _seconds(positive: bool) -> Any:
    def validate(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise problem(f"expected a number of seconds, got {kind(value)}")
        if not math.isfinite(value):
            raise problem("expected a finite number of seconds")
        if positive and value <= 0:
            raise problem(f"must be more than 0 seconds, got {value}")
        if value < 0:
            raise problem(f"must not be negative, got {value}")
        return float(value)
    return Annotated[float, PlainValidator(validate)]


def _choice(values: type[StrEnum], refuse: dict[StrEnum, str] | None = None) -> Any:
    """One of an enumeration's values, exactly as spelt; `refuse`: values that are never accepted, and why."""
    allowed = [m.value for m in values]

    def validate(value: Any) -> StrEnum:
        if isinstance(value, str) and value in allowed:
            if refuse and values(value) in refuse:
                raise problem(refuse[values(value)])
            return values(value)
        hint = (" (values are case-sensitive)" if isinstance(value, str)
                and value.strip().upper() in (a.upper() for a in allowed) else "")
        raise problem(f"expected one of {', '.join(repr(a) for a in allowed)}, got {kind(value)}{hint}")
    return Annotated[values, PlainValidator(validate)]


def _true(hint: str = "") -> Any:
    def validate(value: Any) -> bool:
        if value is not True:
            raise problem(f"expected true, got {kind(value)} (conditions cannot be negated{hint})")
        return True
    return Annotated[bool, PlainValidator(validate)]


def _unique(items: list) -> list:
    seen: dict[Any, int] = {}
    for i, value in enumerate(items):
        marker = value.code().key if isinstance(value, CodeSpec) else value
        if marker in seen:
            shown = str(value.code()) if isinstance(value, CodeSpec) else repr(str(value))
            raise problem(f"{shown} is listed twice", item=i, also=seen[marker])
        seen[marker] = i
    return items


def _unique_list(item: Any) -> Any:
    return Annotated[list[item], AfterValidator(_unique)]


Name = _text(64)
LongText = _text(10_000)
Scheme = _text(16)
SopClassUids = _unique_list(_text(64, _sop_class))
AeTitles = _unique_list(_text(16, _ae_title))
Modalities = _unique_list(_text(16, _modality))
Regex = _text(1000, _regex)
PositiveSeconds = _seconds(positive=True)
Seconds = _seconds(positive=False)


# --- tables --------------------------------------------------------------------------------------------

class _Table(BaseModel):
    """A TOML table: unknown keys are errors (a misspelt key is never silently ignored), values are
    taken as written (no "600" for 600)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CodeSpec(_Table):
    value: Name
    scheme: Scheme
    meaning: Name = ""  # optional (ignored) when matching

    def code(self) -> Code:
        return Code(self.value, self.scheme, self.meaning)


class NamedCodeSpec(CodeSpec):
    """A code a created workitem carries: Code Meaning is Type 1 there."""

    meaning: Name


Codes = _unique_list(CodeSpec)


def _some_conditions(conditions: list) -> list:
    if not conditions:
        raise problem("an empty list of conditions")
    return conditions


class ConditionSpec(_Table):
    """One condition of `complete_when`: a table with exactly one key."""

    all_of: Annotated[list[ConditionSpec], AfterValidator(_some_conditions)] | None = None
    any_of: Annotated[list[ConditionSpec], AfterValidator(_some_conditions)] | None = None
    expected_set_available: _true("; to require that no MPPS is known, use expected_set_known = false") | None = None
    expected_set_known: bool | None = None
    expected_count: Annotated[int, Field(ge=1)] | None = None
    listed_instances_available: _true() | None = None
    settled: PositiveSeconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if isinstance(data, dict):  # unknown keys are reported by the field check
            if not data:
                raise problem(f"an empty condition; write one of {', '.join(cls.model_fields)}")
            if len([k for k in data if k in cls.model_fields]) > 1:
                raise problem(f"a condition has exactly one key, got {', '.join(data)}; combine conditions "
                              "with all_of = [...] or any_of = [...]")
        return data

    def build(self) -> Condition:
        if self.all_of is not None:
            return AllOf(tuple(c.build() for c in self.all_of))
        if self.any_of is not None:
            return AnyOf(tuple(c.build() for c in self.any_of))
        if self.expected_set_available:
            return ExpectedSetAvailable()
        if self.expected_set_known is not None:
            return ExpectedSetKnown(self.expected_set_known)
        if self.expected_count is not None:
            return ExpectedCount(self.expected_count)
        if self.listed_instances_available:
            return ListedInstancesAvailable()
        return Settled(self.settled)


class SelectorSpec(_Table):
    accession_numbers: _unique_list(_text(16, _pattern)) = []
    scheduled_workitem_codes: Codes = []
    worklist_labels: _unique_list(_text(64, _pattern)) = []
    link_by_accession_number: bool = False

    def build(self) -> Selector:
        return Selector(tuple(self.accession_numbers), tuple(c.code() for c in self.scheduled_workitem_codes),
                        tuple(self.worklist_labels), self.link_by_accession_number)


def _down_to_the_worst(accepted: list[Availability]) -> list[Availability]:
    if not accepted:
        raise problem('must name at least one availability, e.g. ["ONLINE"]')
    for a in accepted:
        better = [b for b in Availability if b.rank < a.rank and b not in accepted]
        if better:
            raise problem(f"{a.value} is accepted but the better {better[0].value} is not; accept every "
                          f'availability down to the worst one wanted (e.g. ["ONLINE", "NEARLINE"])')
    return accepted


AcceptedAvailability = _choice(Availability, {
    Availability.UNAVAILABLE: "UNAVAILABLE cannot be accepted: an instance UNAVAILABLE at an AE cannot be "
                              "retrieved from it"})


class InputsSpec(_Table):
    sop_class_uids: SopClassUids = []
    accepted_availability: Annotated[list[AcceptedAvailability], AfterValidator(_unique),
                                     AfterValidator(_down_to_the_worst)] = [Availability.ONLINE]
    preferred_retrieve_aes: AeTitles = []
    restrict_to_expected_set: bool = True

    def build(self) -> InputRules:
        return InputRules(tuple(self.sop_class_uids), frozenset(self.accepted_availability),
                          tuple(self.preferred_retrieve_aes), self.restrict_to_expected_set)


class PolicySpec(_Table):
    """`[[policy]]`."""

    name: Name
    description: LongText = ""
    order: int = DEFAULT_ORDER
    applies_to: SelectorSpec = Field(default_factory=SelectorSpec)
    inputs: InputsSpec = Field(default_factory=InputsSpec)
    complete_when: ConditionSpec = Field(description="when are the inputs complete?")
    on_downgrade: _choice(OnDowngrade) = OnDowngrade.INCOMPLETE

    def build(self, source: str) -> Policy:
        return Policy(name=self.name, description=self.description, order=self.order,
                      applies_to=self.applies_to.build(), inputs=self.inputs.build(),
                      complete_when=self.complete_when.build(), on_downgrade=self.on_downgrade, source=source)


class TemplateConditionsSpec(_Table):
    modalities: Modalities = []
    sop_class_uids: SopClassUids = []
    calling_ae_titles: AeTitles = []
    procedure_codes: Codes = []
    study_description: Regex | None = None

    def build(self) -> TemplateConditions:
        return TemplateConditions(tuple(self.modalities), tuple(self.sop_class_uids), tuple(self.calling_ae_titles),
                                  tuple(c.code() for c in self.procedure_codes), self.study_description)


class CreatesSpec(_Table):
    scheduled_workitem_code: NamedCodeSpec
    procedure_step_label: Name
    station_name_code: NamedCodeSpec | None = None
    priority: _choice(Priority) = Priority.MEDIUM
    worklist_label: Name | None = None
    start_delay: Seconds = 0.0

    def build(self) -> WorkitemSpec:
        return WorkitemSpec(self.scheduled_workitem_code.code(), self.procedure_step_label,
                            self.station_name_code.code() if self.station_name_code else None,
                            self.priority, self.worklist_label, self.start_delay)


class TemplateSpec(_Table):
    """`[[template]]`."""

    name: Name
    description: LongText = ""
    conditions: TemplateConditionsSpec = Field(default_factory=TemplateConditionsSpec)
    creates: CreatesSpec = Field(description="what workitem does the template create?")

    def build(self, source: str) -> Template:
        return Template(name=self.name, conditions=self.conditions.build(), creates=self.creates.build(),
                        description=self.description, source=source)


class PolicyFileSpec(_Table):
    """A file's top level. Its `[[policy]]` and `[[template]]` tables are validated one by one
    (`loading.py`), so the valid ones are known when another is not."""

    version: int = SCHEMA_VERSION
    policy: list[dict[str, Any]] = []
    template: list[dict[str, Any]] = []

    @field_validator("version", mode="plain")
    @classmethod
    def _version(cls, value: Any) -> int:
        if value != SCHEMA_VERSION or isinstance(value, bool):
            raise problem(f"this server reads policy files of version {SCHEMA_VERSION}, got {kind(value)}")
        return value

    @field_validator("policy", "template", mode="plain")
    @classmethod
    def _array_of_tables(cls, value: Any, info) -> list[dict[str, Any]]:
        if not (isinstance(value, list) and all(isinstance(x, dict) for x in value)):
            got = "a list of other values" if isinstance(value, list) else kind(value)
            raise problem(f"expected [[{info.field_name}]] tables (an array of tables), got {got}; "
                          f"write [[{info.field_name}]] with two brackets")
        return value
