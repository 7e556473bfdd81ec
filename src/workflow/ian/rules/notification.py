"""The Instance Availability Notification: its attribute rules (PS3.4 Table R.3.2-1) as data, and the
parser that turns a DICOM JSON data set into a validated `Notification` or rejects it with the status
the standard names.

Works on the DICOM JSON model (PS3.18 F.2), so the same rules serve DIMSE today and HTTP tomorrow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from workflow.kernel import statuses
from workflow.ian.rules.availability import Availability
from workflow.kernel.statuses import Status

IAN_SOP_CLASS_UID = "1.2.840.10008.5.1.4.33"

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_CS_RE = re.compile(r"^[A-Z0-9 _]{1,16}$")


def is_uid(value: str) -> bool:
    return len(value) <= 64 and bool(_UID_RE.match(value))


def is_ae_title(value: str) -> bool:
    return bool(_AE_RE.match(value)) and bool(value.strip())


def _is_availability(value: str) -> bool:
    return value in Availability.__members__


def _is_short_string(value: str) -> bool:
    return len(value) <= 16


def _is_url(value: str) -> bool:
    return "://" in value or value.startswith("/")


@dataclass(frozen=True)
class Check:
    describe: str  # for the conformance statement
    ok: Callable[[str], bool]


UID = Check("a valid UID (digits and dots, at most 64 characters)", is_uid)
AE_TITLE = Check("valid AE titles (1-16 characters of the default repertoire, no backslash)", is_ae_title)
AVAILABILITY = Check("one of ONLINE, NEARLINE, OFFLINE, UNAVAILABLE", _is_availability)
SHORT = Check("at most 16 characters", _is_short_string)
URL = Check("an absolute URL or path", _is_url)


@dataclass(frozen=True)
class Attr:
    """One attribute of the IAN N-CREATE: its requirement type (1, 2 or 3) and what its value must be."""

    tag: str  # "GGGGEEEE" as in DICOM JSON
    keyword: str
    type: str
    check: Check | None = None
    multi: bool = False  # VM 1-n allowed
    items: tuple["Attr", ...] = ()  # a sequence's item attributes
    max_items: int | None = None
    is_sequence: bool = field(init=False)

    def __post_init__(self) -> None:
        # A plain attribute, not a property: the parser asks once per attribute per item.
        object.__setattr__(self, "is_sequence", bool(self.items) or self.keyword.endswith("Sequence"))

    @property
    def tag_text(self) -> str:
        return f"({self.tag[:4]},{self.tag[4:]})"


# PS3.4 Table R.3.2-1, SCP column.
IAN_ATTRIBUTES: tuple[Attr, ...] = (
    Attr("00081111", "ReferencedPerformedProcedureStepSequence", "2", max_items=1, items=(
        Attr("00081150", "ReferencedSOPClassUID", "1", UID),
        Attr("00081155", "ReferencedSOPInstanceUID", "1", UID),
        Attr("00404019", "PerformedWorkitemCodeSequence", "2"),
    )),
    Attr("0020000D", "StudyInstanceUID", "1", UID),
    Attr("00081115", "ReferencedSeriesSequence", "1", items=(
        Attr("0020000E", "SeriesInstanceUID", "1", UID),
        Attr("00081199", "ReferencedSOPSequence", "1", items=(
            Attr("00081150", "ReferencedSOPClassUID", "1", UID),
            Attr("00081155", "ReferencedSOPInstanceUID", "1", UID),
            Attr("00080056", "InstanceAvailability", "1", AVAILABILITY),
            Attr("00080054", "RetrieveAETitle", "1", AE_TITLE, multi=True),
            Attr("0040E011", "RetrieveLocationUID", "3", UID),
            Attr("0040E010", "RetrieveURI", "3", URL),
            Attr("00081190", "RetrieveURL", "3", URL),
            Attr("00880130", "StorageMediaFileSetID", "3", SHORT),
            Attr("00880140", "StorageMediaFileSetUID", "3", UID),
        )),
    )),
)


class IANRejected(Exception):
    """The IAN breaks a rule: the status to answer, a short comment for the sender, the offending tags."""

    def __init__(self, status: Status, comment: str, tags: tuple[str, ...] = (), path: str = "") -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment
        self.tags = tags
        self.path = path


@dataclass(frozen=True)
class ReferencedInstance:
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    availability: Availability
    retrieve_ae_titles: tuple[str, ...]
    retrieve_url: str | None = None
    retrieve_uri: str | None = None
    retrieve_location_uid: str | None = None
    file_set_id: str | None = None
    file_set_uid: str | None = None


@dataclass(frozen=True)
class Notification:
    """A validated IAN."""

    study_instance_uid: str
    instances: tuple[ReferencedInstance, ...]
    pps_uid: str | None = None
    pps_class_uid: str | None = None
    warnings: tuple[str, ...] = field(default=())


def count_instances(ds: dict[str, Any]) -> int:
    """Referenced instances in an IAN, counted before validation so an oversized one costs little."""
    total = 0
    for series in _items(ds.get("00081115")):
        total += len(_items(series.get("00081199")))
    return total


def parse_ian(ds: dict[str, Any], max_instances: int) -> Notification:
    """Validate a DICOM JSON IAN data set; raise IANRejected with the precise status when it is wrong."""
    count = count_instances(ds)
    if count > max_instances:
        raise IANRejected(statuses.RESOURCE_LIMITATION,
                          f"{count} instances exceed this server's limit of {max_instances}")
    warnings: list[str] = []
    _validate(ds, IAN_ATTRIBUTES, (), warnings)
    study_uid = _first(ds, "0020000D")
    pps_items = _items(ds.get("00081111"))
    pps_uid = _first(pps_items[0], "00081155") if pps_items else None
    pps_class = _first(pps_items[0], "00081150") if pps_items else None
    instances = tuple(_instances(ds))
    return Notification(study_uid, instances, pps_uid, pps_class, tuple(warnings))


def _instances(ds: dict[str, Any]) -> Iterator[ReferencedInstance]:
    for series in _items(ds.get("00081115")):
        series_uid = _first(series, "0020000E")
        for item in _items(series.get("00081199")):
            yield ReferencedInstance(
                sop_class_uid=_first(item, "00081150"),
                sop_instance_uid=_first(item, "00081155"),
                series_instance_uid=series_uid,
                availability=Availability(_first(item, "00080056")),
                retrieve_ae_titles=tuple(dict.fromkeys(v.strip() for v in _values(item, "00080054"))),
                retrieve_url=_first(item, "00081190"),
                retrieve_uri=_first(item, "0040E010"),
                retrieve_location_uid=_first(item, "0040E011"),
                file_set_id=_first(item, "00880130"),
                file_set_uid=_first(item, "00880140"),
            )


def _validate(ds: dict[str, Any], rules: tuple[Attr, ...], path: tuple, warnings: list[str]) -> None:
    """Check `ds` against `rules`, raising on the first error; absent Type 2 attributes become warnings.
    `path` locates `ds` (sequence keyword, item index, ...) and is only turned into text on error."""
    for rule in rules:
        element = ds.get(rule.tag)
        if element is None:
            if rule.type == "1":
                _reject(statuses.MISSING_ATTRIBUTE, rule, path, "missing")
            elif rule.type == "2":
                warnings.append(f"{_where(path, rule)} absent (Type 2); treated as empty")
            continue
        values = element.get("Value")
        if rule.is_sequence:
            if element.get("vr") != "SQ":
                _reject(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "is not a sequence")
            if not values:
                if rule.type == "1":
                    _reject(statuses.MISSING_ATTRIBUTE_VALUE, rule, path, "has no items")
                continue
            if rule.max_items is not None and len(values) > rule.max_items:
                _reject(statuses.INVALID_ATTRIBUTE_VALUE, rule, path,
                        f"has {len(values)} items, at most {rule.max_items}")
            for i, item in enumerate(values):
                if not isinstance(item, dict):
                    _reject(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, f"item {i + 1} invalid")
                _validate(item, rule.items, path + (rule.keyword, i), warnings)
            continue
        present = [v for v in values or () if v is not None and v != ""]
        if not present:
            if rule.type == "1":
                _reject(statuses.MISSING_ATTRIBUTE_VALUE, rule, path, "is empty")
            continue
        if len(values) > 1 and not rule.multi:
            _reject(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "has more than one value")
        check = rule.check
        for value in present:
            if not isinstance(value, str) or (check is not None and not check.ok(value)):
                _reject(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, f"invalid: {value!r}")


def _where(path: tuple, rule: Attr) -> str:
    parts = [f"{path[i]}[{path[i + 1]}]" for i in range(0, len(path), 2)]
    return ".".join(parts + [rule.keyword])


def _reject(status: Status, rule: Attr, path: tuple, problem: str) -> None:
    tag = f" {rule.tag_text}" if status in (statuses.MISSING_ATTRIBUTE, statuses.MISSING_ATTRIBUTE_VALUE) else ""
    raise IANRejected(status, error_comment(f"{rule.keyword}{tag} {problem}"), (rule.tag,), _where(path, rule))


def error_comment(text: str) -> str:
    """Error Comment (0000,0902) is LO: at most 64 characters of the default repertoire."""
    text = text.encode("ascii", "replace").decode("ascii").replace("\\", "/")
    return text if len(text) <= 64 else text[:61] + "..."


def _items(element: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not element:
        return []
    return [i for i in element.get("Value") or [] if isinstance(i, dict)]


def _values(ds: dict[str, Any], tag: str) -> list[str]:
    element = ds.get(tag)
    if not element:
        return []
    return [v for v in element.get("Value") or [] if isinstance(v, str) and v]


def _first(ds: dict[str, Any], tag: str) -> Any:
    element = ds.get(tag)
    values = element.get("Value") if element else None
    if values and isinstance(values[0], str) and values[0]:
        return values[0]
    return next((v for v in values or () if isinstance(v, str) and v), None)
