"""The demo's modality and workstation: small but complete CT images and a secondary capture written
as DICOM files, and a Storage SCU that sends files to an archive."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage

from workflow.dimse.client import Peer, Step, association, logged, reply

SECONDARY_CAPTURE = str(SecondaryCaptureImageStorage)
PATIENT = {"PatientName": "Demo^Patient", "PatientID": "DEMO1", "PatientBirthDate": "19700101", "PatientSex": "O"}


def image(folder: Path, study_uid: str, series_uid: str, number: int, *, sop_class: str = str(CTImageStorage),
          modality: str = "CT", series_number: int = 1, description: str = "Head",
          accession: str = "DEMOACC1") -> Path:
    """One 16x16 image of the study, written to folder/<SOP Instance UID>.dcm."""
    now = datetime.now()
    ds = Dataset()
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AccessionNumber, ds.StudyID, ds.StudyDescription = accession, "1", "CT head"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, number
    ds.SeriesDescription = ds.ProtocolName = description
    ds.ReferringPhysicianName = ""
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(256)) * 2
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def store(files: list[Path], peer: Peer) -> list[Step]:
    """C-STORE each file over one association."""
    datasets = [dcmread(file) for file in files]
    with association(peer, sorted({str(ds.SOPClassUID) for ds in datasets})) as assoc:
        return [logged(Step(f"C-STORE {ds.SOPInstanceUID}", reply(assoc.send_c_store(ds))), peer,
                       str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in datasets]

