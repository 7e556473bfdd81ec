"""Study Root Query/Retrieve Information Model - FIND, at STUDY, SERIES and IMAGE level.

Matching keys (any level at or above the query level): Study Instance UID (one or a list), Study
Date (single or range), Study Update DateTime (range), Patient ID, Patient's Name, Accession Number,
Study ID (single value / wild card), Modalities in Study; Series Instance UID (list), Modality,
Series Number; SOP Instance UID (list), SOP Class UID (list), Instance Number. Other keys match
universally and are returned (empty when the archive has no value). Removed entities are included,
and say so in Removed from Operational Use when asked. Responses come in UID order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset

from refarchive.constants import AVAILABILITY
from refarchive.faults import Faults
from refarchive.holdings import Holdings
from refarchive.matching import Where, add_any, add_date, add_modalities, add_string, values
from refarchive.responses import answer, status

log = logging.getLogger("refarchive.find")

_STUDY_COLS = ("st.study_uid, st.study_date, st.study_time, st.accession_number, st.study_id, st.study_description, "
               "st.patient_id, st.patient_name, st.patient_birth_date, st.patient_sex, st.removed_reason, st.updated")
_STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
               "PatientID", "PatientName", "PatientBirthDate", "PatientSex")


LEVEL_KEYS = {"STUDY": ("StudyInstanceUID",), "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
              "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}


def _split(text: str | None) -> list[str]:
    return sorted(v for v in (text or "").split(",") if v)


def _study_known(row: tuple) -> dict:
    known = dict(zip(_STUDY_KEYS, row[:10]))
    known["StudyUpdateDateTime"] = row[11]
    return known


def _where(identifier: Dataset, level: str) -> Where:
    w = Where()
    get = identifier.get
    add_any(w, "st.study_uid", values(get("StudyInstanceUID")))
    add_date(w, "st.study_date", str(get("StudyDate") or ""))
    add_date(w, "st.updated", str(get("StudyUpdateDateTime") or ""), datetime=True)
    for keyword, column in (("PatientID", "patient_id"), ("PatientName", "patient_name"),
                            ("AccessionNumber", "accession_number"), ("StudyID", "study_id")):
        given = values(get(keyword))
        if len(given) == 1:
            add_string(w, f"st.{column}", given[0])
    add_modalities(w, values(get("ModalitiesInStudy")), "st.id")
    if level in ("SERIES", "IMAGE"):
        add_any(w, "se.series_uid", values(get("SeriesInstanceUID")))
        add_any(w, "se.modality", values(get("Modality")))
        if values(get("SeriesNumber")):
            w.add("se.series_number = ?", int(values(get("SeriesNumber"))[0]))
    if level == "IMAGE":
        add_any(w, "i.sop_instance_uid", values(get("SOPInstanceUID")))
        add_any(w, "i.sop_class_uid", values(get("SOPClassUID")))
        if values(get("InstanceNumber")):
            w.add("i.instance_number = ?", int(values(get("InstanceNumber"))[0]))
    return w


def _final_warning(event) -> None:
    """B001 is the final response of a Repository Query transaction (PS3.4 C.6.4.5.2), but pynetdicom
    3.0's C-FIND SCP sends Success after any warning. Drop that one Success on this association."""
    dimse, msg_id = event.assoc.dimse, event.request.MessageID

    def send_msg(rsp, context_id):
        if getattr(rsp, "MessageIDBeingRespondedTo", None) == msg_id and rsp.Status == 0x0000:
            del dimse.send_msg  # the class's method again
            return
        type(dimse).send_msg(dimse, rsp, context_id)

    dimse.send_msg = send_msg


class StudyRootFind:
    def __init__(self, holdings: Holdings, faults: Faults) -> None:
        self.holdings = holdings
        self.faults = faults

    def handle(self, event) -> Iterator[tuple]:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", ""))
        log.info("C-FIND %s from %s", level, event.assoc.requestor.ae_title)
        if level not in ("STUDY", "SERIES", "IMAGE"):
            yield status(0xA900, "Query/Retrieve Level must be STUDY, SERIES or IMAGE"), None
            return
        try:
            where = _where(identifier, level)
        except (ValueError, TypeError) as exc:
            yield status(0xA900, f"invalid key: {exc}"), None
            return
        refused = self._narrow(identifier, level, where)
        if refused is not None:
            yield refused, None
            return
        request, limit, sent = self._echoed(identifier), self._limit(identifier), 0
        with self.holdings.reader() as conn:
            for known in getattr(self, f"_{level.lower()}")(conn, where):
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                if sent == limit:
                    _final_warning(event)
                    yield status(0xB001, "more matches: continue after the last Record Key"), None
                    return
                if self.faults.should_abort():
                    log.warning("fault: aborting the association mid C-FIND")
                    event.assoc.abort()
                    return
                known["QueryRetrieveLevel"] = level
                always = LEVEL_KEYS[level]
                self._decorate(known, level)
                yield 0xFF00, answer(request, known, ("QueryRetrieveLevel", *always, "RetrieveAETitle"))
                sent += 1
        yield 0x0000, None

    # Hooks for the Repository Query SCP, which is this one plus ordering keys and continuation.

    def _narrow(self, identifier: Dataset, level: str, where: Where) -> Dataset | None:
        """Further conditions from the request; a status Dataset refuses it."""
        return None

    def _limit(self, identifier: Dataset) -> int | None:
        return None

    def _echoed(self, identifier: Dataset) -> Dataset:
        return identifier

    def _decorate(self, known: dict, level: str) -> None:
        pass

    @staticmethod
    def _instances(conn, where_sql: str, params) -> tuple:
        """count, least availability, retrieve AEs, URLs and SOP classes of the instances selected."""
        return conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT se.id), MAX(i.availability), GROUP_CONCAT(DISTINCT i.retrieve_ae), "
            "GROUP_CONCAT(DISTINCT i.retrieve_url), GROUP_CONCAT(DISTINCT i.sop_class_uid), "
            "GROUP_CONCAT(DISTINCT se.modality) "
            f"FROM series se JOIN instances i ON i.series = se.id WHERE {where_sql}", params).fetchone()

    @staticmethod
    def _common(known: dict, agg_count: int, availability, aes, urls) -> None:
        known["InstanceAvailability"] = AVAILABILITY[availability] if availability is not None else None
        known["RetrieveAETitle"] = _split(aes) or None
        url = _split(urls)
        known["RetrieveURL"] = url[0] if len(url) == 1 else None

    def _study(self, conn, where: Where) -> Iterator[dict]:
        rows = conn.execute(f"SELECT st.id, {_STUDY_COLS} FROM studies st WHERE {where.sql} ORDER BY st.study_uid",
                            where.params)
        for row in rows:
            known = _study_known(row[1:])
            n, n_series, worst, aes, urls, classes, modalities = self._instances(conn, "se.study = ?", (row[0],))
            self._common(known, n, worst, aes, urls)
            known.update(NumberOfStudyRelatedSeries=n_series, NumberOfStudyRelatedInstances=n,
                         ModalitiesInStudy=_split(modalities) or None, SOPClassesInStudy=_split(classes) or None,
                         RemovedFromOperationalUse="Y" if row[11] else "N")
            yield known

    def _series(self, conn, where: Where) -> Iterator[dict]:
        rows = conn.execute(
            f"SELECT se.id, se.series_uid, se.series_number, se.modality, se.removed_reason, {_STUDY_COLS} "
            f"FROM series se JOIN studies st ON se.study = st.id WHERE {where.sql} "
            "ORDER BY st.study_uid, se.series_uid", where.params)
        for row in rows:
            known = _study_known(row[5:])
            n, _, worst, aes, urls, _, _ = self._instances(conn, "se.id = ?", (row[0],))
            self._common(known, n, worst, aes, urls)
            known.update(SeriesInstanceUID=row[1], SeriesNumber=row[2], Modality=row[3],
                         NumberOfSeriesRelatedInstances=n,
                         RemovedFromOperationalUse="Y" if (row[4] or row[15]) else "N")
            yield known

    def _image(self, conn, where: Where) -> Iterator[dict]:
        rows = conn.execute(
            "SELECT i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.availability, i.retrieve_ae, "
            "i.retrieve_url, i.removed_reason, se.series_uid, se.series_number, se.modality, se.removed_reason, "
            f"{_STUDY_COLS} FROM instances i JOIN series se ON i.series = se.id JOIN studies st ON se.study = st.id "
            f"WHERE {where.sql} ORDER BY st.study_uid, se.series_uid, i.sop_instance_uid", where.params)
        for row in rows:
            known = _study_known(row[11:])
            self._common(known, 1, row[3], row[4], row[5])
            known.update(SOPInstanceUID=row[0], SOPClassUID=row[1], InstanceNumber=row[2], SeriesInstanceUID=row[7],
                         SeriesNumber=row[8], Modality=row[9],
                         RemovedFromOperationalUse="Y" if (row[6] or row[10] or row[21]) else "N")
            yield known
