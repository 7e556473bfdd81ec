"""UPS SCU: what schedulers, performers and administrators send to any UPS SCP (PS3.4 Annex CC).

A complete workitem N-CREATE (every Type 1 and Type 2 attribute of Table CC.2.5-3, from values given
by keyword, a DICOM JSON file or a TOML file); claiming (IN PROGRESS with a new Transaction UID);
completing (the Final State requirements set by N-SET, then COMPLETED); cancelling (one's own claimed
workitem: the discontinuation reason by N-SET, then CANCELED; anyone else's: a request to cancel);
N-GET; a subscription. Every request names the Push SOP Class (CC.3.1.1) and goes on the first
accepted context of the SOP classes that include it.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import UnifiedProcedureStepPull, UnifiedProcedureStepPush, UnifiedProcedureStepWatch

from workflow.dimse.charsets import declare_character_set
from workflow.dimse.client import AssociationFailed, Client, Step, logged, reply
from workflow.ups.rules.attributes import REQUEST_ITEM, UPS_ATTRIBUTES

PUSH, PULL, WATCH = str(UnifiedProcedureStepPush), str(UnifiedProcedureStepPull), str(UnifiedProcedureStepWatch)
NAMES = {PUSH: "UPS Push", PULL: "UPS Pull", WATCH: "UPS Watch"}
GLOBAL_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5"
CHANGE_STATE, REQUEST_CANCEL, SUBSCRIBE = 1, 2, 3
UNSPECIFIED_REASON = ("110513", "DCM", "Discontinued for unspecified reason")

# Type 1 attributes of Table CC.2.5-3 a workitem gets when nothing else is given.
TYPE1_DEFAULTS = {
    "ScheduledProcedureStepPriority": "MEDIUM",
    "ProcedureStepLabel": "Workitem",
    "InputReadinessState": "INCOMPLETE",
    "ProcedureStepState": "SCHEDULED",
}


class InputError(ValueError):
    """A value given to a tool that it cannot use; the message says which and why."""


class WorkitemFileError(InputError):
    """A workitem file that cannot be read; the message names the file, the key and the reason."""


# --- Building data sets (no network) -------------------------------------------------------------------

def code(text: str, default_scheme: str = "99LOCAL") -> Dataset:
    """A code item from "VALUE[^SCHEME[^MEANING]]" (scheme 99LOCAL, meaning the value when left out)."""
    value, scheme, meaning = (text.split("^", 2) + ["", ""])[:3]
    if not value.strip():
        raise InputError(f"{text!r} is not a code: expected VALUE[^SCHEME[^MEANING]]")
    item = Dataset()
    item.CodeValue = value.strip()
    item.CodingSchemeDesignator = scheme.strip() or default_scheme
    item.CodeMeaning = meaning.strip() or value.strip()
    return item


def dicom_datetime(text: str | datetime) -> str:
    """A DICOM DT from "now", ISO 8601 ("2026-12-05 14:30", with or without an offset) or a DT as is.
    An offset given is kept; none given stays none (local time at the SCP)."""
    if isinstance(text, datetime):
        at = text
    elif text.strip().lower() == "now":
        at = datetime.now().astimezone()
    elif re.fullmatch(r"\d{4,14}(\.\d{1,6})?([+-]\d{4})?", text.strip()):
        return text.strip()
    else:
        try:
            at = datetime.fromisoformat(text.strip())
        except ValueError:
            raise InputError(f"{text!r} is not a date and time (e.g. 2026-12-05T14:30, 20261205143000 or now)") from None
    out = at.strftime("%Y%m%d%H%M%S")
    return out + (at.strftime("%z") if at.tzinfo else "")


def new_workitem(base: Dataset | None = None, **keywords: Any) -> Dataset:
    """An N-CREATE data set: `base` (e.g. read from a file), then `keywords` over it, then every Type 1
    attribute still missing from TYPE1_DEFAULTS (the start: now), every Type 2 one empty, and the
    Transaction UID and progress and performed sequences empty as N-CREATE wants them."""
    ds = Dataset() if base is None else base
    for keyword, value in keywords.items():
        if value is not None:
            setattr(ds, keyword, value)
    for keyword, value in TYPE1_DEFAULTS.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    if "ScheduledProcedureStepStartDateTime" not in ds:
        ds.ScheduledProcedureStepStartDateTime = dicom_datetime("now")
    return _with_type2(ds, UPS_ATTRIBUTES)


def request_item(study_uid: str, accession: str | None = None) -> Dataset:
    """A Referenced Request Sequence item: the order a workitem belongs to (Type 2 attributes empty)."""
    item = Dataset()
    item.StudyInstanceUID = study_uid
    item.AccessionNumber = accession or None
    return _with_type2(item, REQUEST_ITEM)


def _with_type2(ds: Dataset, rules) -> Dataset:
    """`ds` with every attribute the rules want at N-CREATE (Type 2, or sent empty) present, empty if
    it was missing."""
    for rule in rules:
        if rule.n_create in ("2", "empty") and rule.keyword not in ds:
            setattr(ds, rule.keyword, [] if rule.is_sequence else None)
    return ds


def workitem_file(path: str | Path) -> Dataset:
    """A workitem (or part of one) from a DICOM JSON file (*.json) or a TOML file whose keys are DICOM
    keywords (a sequence: an array of tables; a TOML date or datetime becomes DA or DT)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkitemFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            return Dataset.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise WorkitemFileError(f"{path}: not a DICOM JSON data set: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkitemFileError(f"{path}: not valid TOML: {exc}") from None
    return _from_keywords(data, str(path), "")


def _from_keywords(data: dict[str, Any], source: str, path: str) -> Dataset:
    ds = Dataset()
    for keyword, value in data.items():
        where = f"{source}: key '{path}{keyword}'"
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise WorkitemFileError(f"{where}: not a DICOM keyword (e.g. PatientName, ScheduledWorkitemCodeSequence)")
        if dictionary_VR(tag) == "SQ":
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise WorkitemFileError(f"{where}: a sequence is an array of tables ([[{keyword}]])")
            value = [_from_keywords(item, source, f"{path}{keyword}[{i}].") for i, item in enumerate(value)]
        else:
            value = _element_value(value)
        try:
            setattr(ds, keyword, value)
        except (TypeError, ValueError) as exc:
            raise WorkitemFileError(f"{where}: {exc}") from None
    return ds


def _element_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_element_value(v) for v in value]
    if isinstance(value, datetime):
        return dicom_datetime(value)
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return None if value == "" else value


def performed_procedure(station: Dataset, workitem_code: Dataset, started: str, ended: str,
                        performer: str | None = None) -> Dataset:
    """The UPS Performed Procedure Sequence item COMPLETED needs (Final State P of Table CC.2.5-3)."""
    item = Dataset()
    item.PerformedStationNameCodeSequence = [station]
    item.PerformedProcedureStepStartDateTime = started
    item.PerformedWorkitemCodeSequence = [workitem_code]
    item.PerformedProcedureStepEndDateTime = ended
    item.OutputInformationSequence = []
    if performer:
        person = Dataset()
        person.HumanPerformerName = performer
        item.ActualHumanPerformersSequence = [person]
    return item


def _cancellation(reason: str | None, reason_code: Dataset | None, into: Dataset | None = None) -> Dataset:
    ds = into if into is not None else Dataset()
    ds.ProcedureStepDiscontinuationReasonCodeSequence = [reason_code or code("^".join(UNSPECIFIED_REASON))]
    if reason:
        ds.ReasonForCancellation = reason
    return ds


# --- Requests ------------------------------------------------------------------------------------------

class UpsClient(Client):
    """One association to a UPS SCP proposing Push, Pull and Watch."""

    abstract_syntaxes = (PUSH, PULL, WATCH)

    def _via(self, *candidates: str) -> str:
        """The first of the SOP classes offering a request that the SCP accepted."""
        accepted = {str(c.abstract_syntax) for c in self.assoc.accepted_contexts}
        for uid in candidates:
            if uid in accepted:
                return uid
        raise AssociationFailed(f"{self.peer} accepts none of {', '.join(NAMES[u] for u in candidates)}")

    def _done(self, what: str, uid: str, result) -> Step:
        return logged(Step(f"UPS {what} {uid}", reply(*result)), self.peer, PUSH, uid)

    def create(self, ds: Dataset, uid: str) -> Step:
        ds = declare_character_set(ds)
        return self._done("N-CREATE", uid, self.assoc.send_n_create(ds, PUSH, uid, meta_uid=self._via(PUSH)))

    def get(self, uid: str, *keywords: str) -> Step:
        tags = [tag_for_keyword(k) for k in keywords]
        return self._done("N-GET", uid, self.assoc.send_n_get(tags, PUSH, uid, meta_uid=self._via(PULL, WATCH, PUSH)))

    def set(self, uid: str, modification: Dataset) -> Step:
        modification = declare_character_set(modification)
        return self._done("N-SET", uid, self.assoc.send_n_set(modification, PUSH, uid, meta_uid=self._via(PULL)))

    def change_state(self, uid: str, state: str, transaction_uid: str) -> Step:
        info = Dataset()
        info.ProcedureStepState = state
        info.TransactionUID = transaction_uid
        result = self.assoc.send_n_action(info, CHANGE_STATE, PUSH, uid, meta_uid=self._via(PULL))
        return self._done(f"N-ACTION {state}", uid, result)

    def request_cancel(self, uid: str, reason: str | None = None, reason_code: Dataset | None = None) -> Step:
        info = declare_character_set(_cancellation(reason, reason_code))
        result = self.assoc.send_n_action(info, REQUEST_CANCEL, PUSH, uid, meta_uid=self._via(PUSH, WATCH))
        return self._done("N-ACTION request cancel", uid, result)

    def subscribe(self, receiving_ae: str, uid: str = GLOBAL_SUBSCRIPTION, deletion_lock: bool = False) -> Step:
        info = Dataset()
        info.ReceivingAE = receiving_ae
        info.DeletionLock = "TRUE" if deletion_lock else "FALSE"
        result = self.assoc.send_n_action(info, SUBSCRIBE, PUSH, uid, meta_uid=self._via(WATCH))
        return self._done(f"N-ACTION subscribe {receiving_ae}", uid, result)

    # --- what a command does: one or more requests, stopping at the first failure

    def claim(self, uid: str, transaction_uid: str | None = None) -> tuple[list[Step], str]:
        transaction_uid = transaction_uid or generate_uid()
        return [self.change_state(uid, "IN PROGRESS", transaction_uid)], transaction_uid

    def complete(self, uid: str, transaction_uid: str, *, started: str | None = None, station: Dataset | None = None,
                 workitem_code: Dataset | None = None, performer: str | None = None) -> list[Step]:
        """Fill the Performed Procedure Sequence (codes not given: the scheduled ones, else our AE
        title as station and "performed" as workitem), then COMPLETED."""
        steps = [self.get(uid, "ScheduledStationNameCodeSequence", "ScheduledWorkitemCodeSequence")]
        if not steps[0].answer.ok:
            return steps
        scheduled = steps[0].answer.dataset or Dataset()
        station = station or _first_item(scheduled, "ScheduledStationNameCodeSequence") or code(
            f"{self.peer.calling_ae}^99LOCAL^AE {self.peer.calling_ae}")
        workitem_code = workitem_code or _first_item(scheduled, "ScheduledWorkitemCodeSequence") or code(
            "PERFORMED^99LOCAL^Workitem performed")
        now = dicom_datetime("now")
        modification = Dataset()
        modification.TransactionUID = transaction_uid
        modification.UnifiedProcedureStepPerformedProcedureSequence = [
            performed_procedure(station, workitem_code, started or now, now, performer)]
        steps.append(self.set(uid, modification))
        if steps[-1].answer.ok:
            steps.append(self.change_state(uid, "COMPLETED", transaction_uid))
        return steps

    def cancel(self, uid: str, transaction_uid: str | None, reason: str | None = None,
               reason_code: Dataset | None = None) -> list[Step]:
        """Our own claimed workitem (a Transaction UID): record why (N-SET of the progress information,
        keeping what is there), then CANCELED. Anyone else's: a request to cancel (N-ACTION 2)."""
        if not transaction_uid:
            return [self.request_cancel(uid, reason, reason_code)]
        steps = [self.get(uid, "ProcedureStepProgressInformationSequence")]
        if not steps[0].answer.ok:
            return steps
        progress = _first_item(steps[0].answer.dataset or Dataset(), "ProcedureStepProgressInformationSequence")
        progress = progress or Dataset()
        modification = Dataset()
        modification.TransactionUID = transaction_uid
        modification.ProcedureStepProgressInformationSequence = [_cancellation(reason, reason_code, progress)]
        steps.append(self.set(uid, modification))
        if steps[-1].answer.ok:
            steps.append(self.change_state(uid, "CANCELED", transaction_uid))
        return steps


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    items = ds.get(keyword) or []
    return items[0] if len(items) else None
