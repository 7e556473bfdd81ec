"""Scope of Inventory (PS3.3 C.38.2.1): which studies an inventory covers.

Supported, all at study level (no RELATIONAL matching):
- List of UID Matching Sequence: Study Instance UID;
- Range Matching Sequence: Study Date, Study Update DateTime;
- General Matching Sequence: Study Instance UID, Study Date, Study Update DateTime, Modalities in
  Study (any of its values), Patient ID, Patient's Name, Accession Number, Study ID (single value
  or wild card);
- Extended Matching Mechanisms: MULTIPLE_VALUE only.
Anything else is reported as unsupported (the Initiate answer is then B010 with those tags, and
the key is left out, i.e. matched universally).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from refarchive.matching import Where, add_any, add_modalities, add_range, add_string, values

SCOPE_SEQ = 0x00080400
MECHANISMS = 0x0008040F
RANGE_SEQ = 0x00080410
UID_LIST_SEQ = 0x00080411
EMPTY_SEQ = 0x00080412
GENERAL_SEQ = 0x00080413
SPECIFIC_CHARSET = 0x00080005

_GENERAL_STRING_KEYS = {"PatientID": "patient_id", "PatientName": "patient_name",
                        "AccessionNumber": "accession_number", "StudyID": "study_id"}


@dataclass
class Scope:
    """Study-level selection; an empty Scope is the universal match."""

    study_uids: list[str] = field(default_factory=list)
    study_date: tuple[str, str] | None = None  # inclusive; "" = unbounded
    updated: tuple[str, str] | None = None  # Study Update DateTime range
    modalities: list[str] = field(default_factory=list)
    patient_id: str | None = None
    patient_name: str | None = None
    accession_number: str | None = None
    study_id: str | None = None

    @property
    def is_universal(self) -> bool:
        return self.to_item() is None

    def where(self, alias: str = "st") -> Where:
        """Conditions on the studies table (aliased `alias`)."""
        w = Where()
        add_any(w, f"{alias}.study_uid", self.study_uids)
        if self.study_date:
            add_range(w, f"{alias}.study_date", *self.study_date)
        if self.updated:
            add_range(w, f"{alias}.updated", *self.updated, datetime=True)
        add_modalities(w, self.modalities, f"{alias}.id")
        for key, column in _GENERAL_STRING_KEYS.items():
            add_string(w, f"{alias}.{column}", getattr(self, column))
        return w

    def to_item(self) -> Dataset | None:
        """The Scope of Inventory Sequence item that states this scope; None when universal."""
        item = Dataset()
        general = Dataset()
        for key, column in _GENERAL_STRING_KEYS.items():
            if getattr(self, column):
                setattr(general, key, getattr(self, column))
        if self.modalities:
            general.ModalitiesInStudy = list(self.modalities)
            if len(self.modalities) > 1:
                item.ExtendedMatchingMechanisms = "MULTIPLE_VALUE"
        if len(self.study_uids) == 1:
            general.StudyInstanceUID = self.study_uids[0]
        elif self.study_uids:
            seq = []
            for uid in self.study_uids:
                one = Dataset()
                one.StudyInstanceUID = uid
                seq.append(one)
            item.ListOfUIDMatchingSequence = seq
        if self.study_date or self.updated:
            begin, end = Dataset(), Dataset()
            if self.study_date:
                begin.StudyDate, end.StudyDate = self.study_date
            if self.updated:
                begin.StudyUpdateDateTime, end.StudyUpdateDateTime = self.updated
            item.RangeMatchingSequence = [begin, end]
        if len(general):
            item.GeneralMatchingSequence = [general]
        return item if len(item) else None

    def to_sequence(self) -> list[Dataset]:
        item = self.to_item()
        return [item] if item is not None else []

    @classmethod
    def from_sequence(cls, seq: Sequence | list | None) -> tuple[Scope, list[int]]:
        """Parse a requested Scope of Inventory Sequence: (scope, tags of unsupported keys)."""
        scope = cls()
        unsupported: list[int] = []

        def refuse(tag) -> None:
            if int(tag) not in unsupported:
                unsupported.append(int(tag))

        if not seq:
            return scope, unsupported
        if len(seq) > 1:
            refuse(SCOPE_SEQ)
        item = seq[0]
        for mechanism in values(item.get(MECHANISMS)):
            if mechanism != "MULTIPLE_VALUE":
                refuse(MECHANISMS)
        for elem in item:
            if elem.tag in (MECHANISMS, SPECIFIC_CHARSET):
                continue
            if elem.tag == UID_LIST_SEQ:
                for one in elem.value:
                    for key in one:
                        if key.keyword == "StudyInstanceUID":
                            scope.study_uids.extend(values(key))
                        else:
                            refuse(key.tag)
            elif elem.tag == RANGE_SEQ:
                if len(elem.value) != 2:
                    refuse(RANGE_SEQ)
                    continue
                begin, end = elem.value
                for tag in sorted(set(begin.keys()) | set(end.keys())):
                    low = str(begin.get(tag).value or "") if tag in begin else ""
                    high = str(end.get(tag).value or "") if tag in end else ""
                    keyword = (begin.get(tag) or end.get(tag)).keyword
                    if keyword == "StudyDate":
                        scope.study_date = (low, high)
                    elif keyword == "StudyUpdateDateTime":
                        scope.updated = (low, high)
                    else:
                        refuse(tag)
            elif elem.tag == GENERAL_SEQ:
                for general in elem.value[:1]:
                    for key in general:
                        scope._general(key, refuse)
                if len(elem.value) > 1:
                    refuse(GENERAL_SEQ)
            elif elem.tag == EMPTY_SEQ:
                for one in elem.value:
                    for key in one:
                        refuse(key.tag)
                refuse(EMPTY_SEQ)
            else:
                # A bare key, Timezone Offset (TIMEZONE_ADJUST), Query/Retrieve Level (RELATIONAL)...
                refuse(elem.tag)
        return scope, unsupported

    def _general(self, key, refuse) -> None:
        given = values(key)
        if not given:
            return
        keyword = key.keyword
        if keyword == "StudyInstanceUID":
            self.study_uids.extend(given)
        elif keyword == "ModalitiesInStudy":
            self.modalities.extend(given)
        elif keyword == "StudyDate" and len(given) == 1:
            self.study_date = (given[0], given[0])
        elif keyword == "StudyUpdateDateTime" and len(given) == 1:
            self.updated = (given[0], given[0])
        elif keyword in _GENERAL_STRING_KEYS and len(given) == 1:
            setattr(self, _GENERAL_STRING_KEYS[keyword], given[0])
        else:
            refuse(key.tag)
