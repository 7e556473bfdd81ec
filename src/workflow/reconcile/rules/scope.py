"""The scope of a reconciliation (which studies it lists) and what an Inventory's Scope of Inventory
Sequence (PS3.3 C.38.2-1) covers: built and compared as pydicom Datasets (values), no network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from pydicom.dataset import Dataset

from workflow.reconcile.rules.dicom_values import text_values


@dataclass(frozen=True)
class HoldingsScope:
    """Which studies to list; the criteria combine with AND. The default lists every study.
    `since` matches Study Date >= since (studies without a Study Date do not match a range)."""

    since: date | None = None
    modalities: Sequence[str] = ()
    study_uids: Sequence[str] = ()


def scope_item(scope: HoldingsScope) -> Dataset | None:
    """The Scope of Inventory Sequence item (PS3.3 C.38.2-1) for `scope`; None: universal."""
    item, general = Dataset(), Dataset()
    uids = list(scope.study_uids)
    if len(uids) == 1:
        general.StudyInstanceUID = uids[0]
    elif uids:
        seq = []
        for uid in uids:
            one = Dataset()
            one.StudyInstanceUID = uid
            seq.append(one)
        item.ListOfUIDMatchingSequence = seq
    modalities = [m.strip().upper() for m in scope.modalities if m.strip()]
    if modalities:
        general.ModalitiesInStudy = modalities
        if len(modalities) > 1:
            item.ExtendedMatchingMechanisms = "MULTIPLE_VALUE"
    if scope.since:
        begin, end = Dataset(), Dataset()
        begin.StudyDate = f"{scope.since:%Y%m%d}"
        end.StudyDate = ""  # open-ended
        item.RangeMatchingSequence = [begin, end]
    if len(general):
        item.GeneralMatchingSequence = [general]
    return item if len(item) else None


def scope_covers(items, scope: HoldingsScope) -> bool:
    """Does an inventory with this Scope of Inventory Sequence list every study `scope` selects?
    Conservative: a key or mechanism not understood here means no."""
    if items is None:
        return False  # not returned: unknown
    if len(items) == 0:
        return True
    if len(items) > 1:
        return False
    ours_uids = set(scope.study_uids)
    ours_modalities = {m.strip().upper() for m in scope.modalities if m.strip()}
    for elem in items[0]:
        keyword = elem.keyword
        if keyword == "SpecificCharacterSet":
            continue
        if keyword == "ExtendedMatchingMechanisms":
            if set(text_values(elem.value)) - {"MULTIPLE_VALUE"}:
                return False
        elif keyword == "ListOfUIDMatchingSequence":
            listed = set()
            for one in elem.value:
                if any(e.keyword != "StudyInstanceUID" for e in one):
                    return False
                listed.update(text_values(one.StudyInstanceUID) if "StudyInstanceUID" in one else [])
            if not ours_uids or not ours_uids <= listed:
                return False
        elif keyword == "RangeMatchingSequence":
            if not _range_covers(elem.value, scope.since):
                return False
        elif keyword == "GeneralMatchingSequence":
            for general in elem.value:
                if not _general_covers(general, ours_uids, ours_modalities):
                    return False
        else:
            return False
    return True


def _range_covers(value, since: date | None) -> bool:
    if len(value) != 2:
        return False
    begin, end = value
    for tag in set(begin.keys()) | set(end.keys()):
        low = text_values(begin[tag].value) if tag in begin else []
        high = text_values(end[tag].value) if tag in end else []
        keyword = (begin[tag] if tag in begin else end[tag]).keyword
        if keyword != "StudyDate" or high:
            return False  # only an open-ended Study Date range is understood
        if low and (since is None or f"{since:%Y%m%d}" < low[0]):
            return False
    return True


def _general_covers(general: Dataset, ours_uids: set[str], ours_modalities: set[str]) -> bool:
    for key in general:
        given = text_values(key.value) if key.VR != "SQ" else ["?"]
        if not given:
            continue  # universal matching
        if key.keyword == "StudyInstanceUID":
            if not ours_uids or not ours_uids <= set(given):
                return False
        elif key.keyword == "ModalitiesInStudy":
            if not ours_modalities or not ours_modalities <= {g.upper() for g in given}:
                return False
        else:
            return False
    return True
