"""What is known when policies are applied: the facts the readiness service gathers from IANs, MPPS
and the workitem, put in a canonical order so that the order of arrival never matters."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import KeysView
from datetime import datetime
from typing import AbstractSet

from workflow.ian.rules.availability import Availability


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


class CanonicalInstances(tuple):
    """Instances already in the canonical order (by SOP Instance UID, each once), as a caller that
    keeps them sorted between evaluations builds them: `Facts` takes them as they are."""


@dataclass(frozen=True)
class Facts:
    """What is known when a workitem's readiness is evaluated.

    expected: SOP Instance UIDs of the expected set (the union of the Performed Series Sequence of the
      study's COMPLETED MPPS); None when no MPPS is known.
    instances: every instance IANs announced for the study (unique SOP Instance UIDs); empty when the
      caller evaluates with the `Choices` it keeps for the study, which hold them.
    listed: SOP Instance UIDs already in the workitem's Input Information Sequence (a dict's keys view
      is kept as it is, not copied: only a policy with `listed_instances_available` reads it).
    last_ian_at: when the last IAN for the study was received; None when none was.
    now: the time of the evaluation.
    """

    expected: frozenset[str] | None
    instances: tuple[InstanceFacts, ...]
    listed: AbstractSet[str]
    last_ian_at: datetime | None
    now: datetime

    def __post_init__(self) -> None:
        if self.expected is not None:
            object.__setattr__(self, "expected", frozenset(self.expected))
        if not isinstance(self.listed, (frozenset, KeysView)):  # a dict's keys are read, not copied
            object.__setattr__(self, "listed", frozenset(self.listed))
        if isinstance(self.instances, CanonicalInstances):
            return
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
    """What is known about a study when templates are checked.

    modalities: the Modality of the study's MPPS (empty when none names one; templates then use the
      modalities the SOP classes of its instances imply, see modalities.py).
    sop_class_uids: of the instances IANs announced. calling_ae_titles: the AEs that sent those IANs.
    procedure_codes, study_description: from the study's MPPS (Procedure Code Sequence, Performed
      Procedure Step Description)."""

    study_instance_uid: str
    modalities: frozenset[str] = frozenset()
    sop_class_uids: frozenset[str] = frozenset()
    calling_ae_titles: frozenset[str] = frozenset()
    procedure_codes: frozenset[tuple[str, str]] = frozenset()  # (Code Value, Coding Scheme Designator)
    study_description: str | None = None
