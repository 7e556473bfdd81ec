"""The Instance Availability Notification: its attribute rules (PS3.4 Table R.3.2-1) as data for the
attribute-rule engine (kernel/attributes.py), and the parser that turns a DICOM JSON data set into a
validated `Notification` or rejects it with the status the standard names.

Works on the DICOM JSON model (PS3.18 F.2), so the same rules serve DIMSE and HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

from workflow.ian.rules.availability import Availability
from workflow.kernel import statuses
from workflow.kernel.attributes import (AE_TITLE, SHORT, UID, URL, Attr, Check, Op, Rejected, check,
                                        status_conditions)
from workflow.kernel.json_model import first, items, values

IAN_SOP_CLASS_UID = "1.2.840.10008.5.1.4.33"

AVAILABILITY = Check("one of ONLINE, NEARLINE, OFFLINE, UNAVAILABLE", lambda v: v in Availability.__members__)


def _A(tag: str, keyword: str, type_: str, check: Check | None = None, **more) -> Attr:
    """A row of Table R.3.2-1: its SCP column is the requirement on the N-CREATE."""
    return Attr(tag, keyword, n_create=type_, check=check, **more)


# PS3.4 Table R.3.2-1, SCP column.
IAN_ATTRIBUTES: tuple[Attr, ...] = (
    _A("00081111", "ReferencedPerformedProcedureStepSequence", "2", max_items=1, items=(
        _A("00081150", "ReferencedSOPClassUID", "1", UID),
        _A("00081155", "ReferencedSOPInstanceUID", "1", UID),
        _A("00404019", "PerformedWorkitemCodeSequence", "2"),
    )),
    _A("0020000D", "StudyInstanceUID", "1", UID),
    _A("00081115", "ReferencedSeriesSequence", "1", items=(
        _A("0020000E", "SeriesInstanceUID", "1", UID),
        _A("00081199", "ReferencedSOPSequence", "1", items=(
            _A("00081150", "ReferencedSOPClassUID", "1", UID),
            _A("00081155", "ReferencedSOPInstanceUID", "1", UID),
            _A("00080056", "InstanceAvailability", "1", AVAILABILITY),
            _A("00080054", "RetrieveAETitle", "1", AE_TITLE, multi=True),
            _A("0040E011", "RetrieveLocationUID", "3", UID),
            _A("0040E010", "RetrieveURI", "3", URL),
            _A("00081190", "RetrieveURL", "3", URL),
            _A("00880130", "StorageMediaFileSetID", "3", SHORT),
            _A("00880140", "StorageMediaFileSetUID", "3", UID),
        )),
    )),
)


class ReferencedInstance(NamedTuple):
    """One referenced instance of a validated IAN. A named tuple, not a frozen dataclass: an IAN makes
    one per instance, and a frozen dataclass's __init__ sets each field through object.__setattr__."""

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
    return sum(len(items(series, "00081199")) for series in items(ds, "00081115"))


def parse_ian(ds: dict[str, Any], max_instances: int, *, type2_absent: str = "accept") -> Notification:
    """Validate a DICOM JSON IAN data set; raise Rejected with the precise status when it is wrong."""
    count = count_instances(ds)
    if count > max_instances:
        raise Rejected(statuses.RESOURCE_LIMITATION, f"{count} instances exceed this server's limit of {max_instances}")
    warnings = check(ds, IAN_ATTRIBUTES, Op.CREATE, type2_absent=type2_absent)
    pps_items = items(ds, "00081111")
    pps_uid = first(pps_items[0], "00081155") if pps_items else None
    pps_class = first(pps_items[0], "00081150") if pps_items else None
    return Notification(first(ds, "0020000D"), tuple(_instances(ds)), pps_uid, pps_class, tuple(warnings))


def _instances(ds: dict[str, Any]) -> Iterator[ReferencedInstance]:
    for series in items(ds, "00081115"):
        series_uid = first(series, "0020000E")
        for item in items(series, "00081199"):
            availability = first(item, "00080056")
            yield ReferencedInstance(
                sop_class_uid=first(item, "00081150"),
                sop_instance_uid=first(item, "00081155"),
                series_instance_uid=series_uid,
                availability=_AVAILABILITIES.get(availability) or Availability(availability),
                retrieve_ae_titles=tuple(dict.fromkeys(v.strip() for v in values(item, "00080054"))),
                retrieve_url=first(item, "00081190"),
                retrieve_uri=first(item, "0040E010"),
                retrieve_location_uid=first(item, "0040E011"),
                file_set_id=first(item, "00880130"),
                file_set_uid=first(item, "00880140"),
            )


_AVAILABILITIES = {a.value: a for a in Availability}


# The statuses the attribute rules answer (the IAN SCP adds its own).
ATTRIBUTE_STATUSES = status_conditions(IAN_ATTRIBUTES, (Op.CREATE,))
