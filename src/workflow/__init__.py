"""The open DICOM workflow manager."""

__version__ = "0.1.0"
