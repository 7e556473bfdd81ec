"""Building and sending IANs in tests: a real pynetdicom SCU over a real association."""

from __future__ import annotations

from contextlib import contextmanager

from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom.sop_class import InstanceAvailabilityNotification, Verification

from workflow.dimse import response_fields  # noqa: F401  (decode Attribute Identifier List)
from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import release

CT = "1.2.840.10008.5.1.4.1.1.2"
MPPS = "1.2.840.10008.3.1.2.3.3"


def instance_item(sop_uid=None, availability="ONLINE", ae=("PACS",), url=None, **extra) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CT
    item.ReferencedSOPInstanceUID = sop_uid or generate_uid()
    item.InstanceAvailability = availability
    item.RetrieveAETitle = list(ae)
    if url:
        item.RetrieveURL = url
    for key, value in extra.items():
        setattr(item, key, value)
    return item


def make_ian(study_uid=None, series: dict[str, list[Dataset]] | None = None, pps_uid=None) -> Dataset:
    """An IAN; `series` maps Series Instance UID -> Referenced SOP Sequence items."""
    ds = Dataset()
    pps = []
    if pps_uid:
        item = Dataset()
        item.ReferencedSOPClassUID = MPPS
        item.ReferencedSOPInstanceUID = pps_uid
        item.PerformedWorkitemCodeSequence = []
        pps.append(item)
    ds.ReferencedPerformedProcedureStepSequence = pps
    ds.StudyInstanceUID = study_uid or generate_uid()
    if series is None:
        series = {generate_uid(): [instance_item() for _ in range(3)]}
    ds.ReferencedSeriesSequence = []
    for series_uid, items in series.items():
        s = Dataset()
        s.SeriesInstanceUID = series_uid
        s.ReferencedSOPSequence = items
        ds.ReferencedSeriesSequence.append(s)
    return ds


@contextmanager
def association(port: int, calling_ae: str = "MODALITY", called_ae: str = "WFM",
                transfer_syntax=ImplicitVRLittleEndian):
    ae = NoDelayAE(ae_title=calling_ae)
    ae.add_requested_context(InstanceAvailabilityNotification, [transfer_syntax])
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    try:
        yield assoc
    finally:
        release(assoc)  # bounded: pynetdicom's release() can wait for ever on a reactor that has ended


def send(assoc, ds, uid=None) -> tuple[Dataset, str]:
    uid = uid or generate_uid()
    status, _ = assoc.send_n_create(ds, InstanceAvailabilityNotification, uid)
    return status, uid
