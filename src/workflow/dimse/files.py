"""The DICOM files an SCU tool is given (`wfm ian send`, `wfm mpps send`): files and folders, walked
recursively; what is not DICOM is skipped with a warning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

log = logging.getLogger("workflow.scu")


def headers(paths: Iterable[str | Path], tags: list[str]) -> Iterator[tuple[Path, Dataset]]:
    """(file, its data set read for `tags` only) for each DICOM file, folders in name order."""
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                yield file, dcmread(file, stop_before_pixels=True, specific_tags=tags)
            except (InvalidDicomError, OSError) as exc:
                log.warning(f"skipped {file}: not a DICOM file ({exc})")
