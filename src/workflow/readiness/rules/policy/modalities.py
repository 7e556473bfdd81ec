"""The modality a study's instances imply: an IAN names each instance's SOP Class but no Modality, and
many Storage SOP Classes belong to an IOD whose Modality (0008,0060) is fixed (CT Image Storage is
always CT). Templates conditioned on a modality use it when no MPPS of the study names a modality, so
they can fire from IANs alone."""

from __future__ import annotations

from typing import Iterable

from pydicom import uid

# SOP Class -> the Modality its IOD requires. Classes whose IOD allows any modality (Secondary Capture:
# a scanned document or a screen of any modality) imply none and are not listed.
IMPLIED_MODALITY: dict[str, str] = {
    uid.ComputedRadiographyImageStorage: "CR",
    uid.CTImageStorage: "CT",
    uid.EnhancedCTImageStorage: "CT",
    uid.LegacyConvertedEnhancedCTImageStorage: "CT",
    uid.DigitalXRayImageStorageForPresentation: "DX",
    uid.DigitalXRayImageStorageForProcessing: "DX",
    uid.DigitalMammographyXRayImageStorageForPresentation: "MG",
    uid.DigitalMammographyXRayImageStorageForProcessing: "MG",
    uid.BreastTomosynthesisImageStorage: "MG",
    uid.DigitalIntraOralXRayImageStorageForPresentation: "IO",
    uid.DigitalIntraOralXRayImageStorageForProcessing: "IO",
    uid.MRImageStorage: "MR",
    uid.EnhancedMRImageStorage: "MR",
    uid.EnhancedMRColorImageStorage: "MR",
    uid.LegacyConvertedEnhancedMRImageStorage: "MR",
    uid.MRSpectroscopyStorage: "MR",
    uid.UltrasoundImageStorage: "US",
    uid.UltrasoundMultiFrameImageStorage: "US",
    uid.EnhancedUSVolumeStorage: "US",
    uid.NuclearMedicineImageStorage: "NM",
    uid.PositronEmissionTomographyImageStorage: "PT",
    uid.EnhancedPETImageStorage: "PT",
    uid.LegacyConvertedEnhancedPETImageStorage: "PT",
    uid.XRayAngiographicImageStorage: "XA",
    uid.EnhancedXAImageStorage: "XA",
    uid.XRayRadiofluoroscopicImageStorage: "RF",
    uid.EnhancedXRFImageStorage: "RF",
    uid.RTImageStorage: "RTIMAGE",
    uid.RTDoseStorage: "RTDOSE",
    uid.RTStructureSetStorage: "RTSTRUCT",
    uid.RTPlanStorage: "RTPLAN",
    uid.VLEndoscopicImageStorage: "ES",
    uid.VLPhotographicImageStorage: "XC",
    uid.VLWholeSlideMicroscopyImageStorage: "SM",
    uid.OphthalmicPhotography8BitImageStorage: "OP",
    uid.OphthalmicTomographyImageStorage: "OPT",
}

# Named in the documentation as implying no modality, so nobody expects a template to see one.
NO_MODALITY = (uid.SecondaryCaptureImageStorage, uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
               uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
               uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
               uid.MultiFrameSingleBitSecondaryCaptureImageStorage, uid.EncapsulatedPDFStorage)

FROM_MPPS = "named by the study's MPPS"
FROM_SOP_CLASSES = "implied by the SOP classes of its instances"
UNKNOWN = "no MPPS names one and no SOP class of its instances implies one"


def study_modalities(mpps_modalities: Iterable[str], sop_class_uids: Iterable[str]) -> tuple[frozenset[str], str]:
    """The study's modalities for template conditions and where they come from: those its MPPS name;
    when none does, those its instances' SOP classes imply (possibly none)."""
    named = frozenset(m.strip() for m in mpps_modalities if m and m.strip())
    if named:
        return named, FROM_MPPS
    implied = frozenset(IMPLIED_MODALITY[c] for c in sop_class_uids if c in IMPLIED_MODALITY)
    return implied, FROM_SOP_CLASSES if implied else UNKNOWN
