"""A real Orthanc for tests: started with its own temporary configuration, loaded with dcmtk storescu,
inspected and altered through its REST API, stopped by PID.

Orthanc has no bind-address option (it listens on every interface): it runs with a small LD_PRELOAD
shim (native/bind_loopback.c, compiled once with gcc) that turns its wildcard binds into loopback ones,
so it listens on 127.0.0.1 only, and everything here talks to it there. Both Orthanc and dcmtk get TCP_NODELAY=1: without it each DIMSE message stalls ~40 ms.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ORTHANC_BIN = "/usr/sbin/Orthanc"
STORESCU_BIN = "/usr/bin/storescu"
HOST = "127.0.0.1"
REQUIRE_ORTHANC = os.environ.get("WFM_REQUIRE_ORTHANC") == "1"

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def require_orthanc() -> None:
    """Call first in an Orthanc fixture: skips (with the reason) when Orthanc or storescu is missing,
    fails instead when WFM_REQUIRE_ORTHANC=1 (CI), so a broken install cannot pass as skipped tests."""
    missing = [b for b in (ORTHANC_BIN, STORESCU_BIN) if not os.access(b, os.X_OK)]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (Debian packages orthanc, dcmtk)"
    if REQUIRE_ORTHANC:
        pytest.fail(f"{reason}; WFM_REQUIRE_ORTHANC=1 makes the Orthanc tests mandatory")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _nodelay_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}


def loopback_shim() -> str:
    """The compiled bind-to-loopback shim (built once per source version, in the temporary folder)."""
    import hashlib
    import shutil

    source = Path(__file__).parent / "native" / "bind_loopback.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    built = Path(tempfile.gettempdir()) / f"wfm-bind-loopback-{digest}.so"
    if not built.exists():
        compiler = shutil.which("gcc") or shutil.which("cc")
        if compiler is None:
            message = "gcc is needed to build the loopback shim Orthanc runs with (apt-get install gcc)"
            pytest.fail(message) if REQUIRE_ORTHANC else pytest.skip(message)
        partial = built.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"],
                       check=True, capture_output=True, timeout=120)
        partial.replace(built)  # atomic: parallel workers never load a half-written file
    return str(built)


def _orthanc_env() -> dict[str, str]:
    preload = " ".join(filter(None, [loopback_shim(), os.environ.get("LD_PRELOAD", "")]))
    return {**_nodelay_env(), "LD_PRELOAD": preload}


class OrthancError(RuntimeError):
    pass


class OrthancServer:
    """`with OrthancServer(aet="ARCHIVE") as orthanc:` a running Orthanc on 127.0.0.1."""

    def __init__(self, aet: str = "ORTHANC", modalities: dict[str, tuple[str, str, int]] | None = None,
                 stable_age: int = 2, startup_timeout: float = 30.0, extra_config: dict | None = None):
        self.aet = aet
        self.host = HOST
        self.modalities = modalities or {}
        self.stable_age = stable_age
        self.startup_timeout = startup_timeout
        self.extra_config = extra_config or {}  # plugins and their sections; may name "{workdir}", "{http_port}"
        self.http_port = 0
        self.dicom_port = 0
        self.startup_seconds: float | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> "OrthancServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()

    @property
    def workdir(self) -> Path:
        assert self._dir is not None, "not started"
        return Path(self._dir.name)

    def start(self) -> None:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="orthanc-")
        work = self.workdir
        (work / "logs").mkdir(exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        config = {
            "Name": f"wfm-test-{self.aet}",
            "StorageDirectory": str(work / "storage"),
            "IndexDirectory": str(work / "index"),
            "Plugins": [],  # never load the packaged plugins
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomCheckCalledAet": False,
            "StableAge": self.stable_age,
            "SaveJobs": False,
            "DicomModalities": {name: list(v) for name, v in self.modalities.items()},
        }
        extra = json.dumps(self.extra_config).replace("{workdir}", str(work))
        config.update(json.loads(extra.replace("{http_port}", str(self.http_port))))
        config_path = work / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        started = time.monotonic()
        self._proc = subprocess.Popen([ORTHANC_BIN, f"--logdir={work / 'logs'}", str(config_path)],
                                      env=_orthanc_env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=work)
        try:
            self._wait_ready(started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        # Ready = REST answers /system and the DICOM port accepts connections.
        while True:
            if self._proc.poll() is not None:
                raise OrthancError(f"Orthanc exited with {self._proc.returncode} during start-up:\n"
                                   f"{self.log_tail()}")
            if self._rest_ready() and self._dicom_ready():
                return
            if time.monotonic() > deadline:
                raise OrthancError(f"Orthanc not ready after {self.startup_timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _rest_ready(self) -> bool:
        try:
            self.rest("GET", "/system", timeout=1)
            return True
        except (OSError, OrthancError):
            return False

    def _dicom_ready(self) -> bool:
        try:
            socket.create_connection((HOST, self.dicom_port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this Orthanc (by its PID only); the storage stays until `cleanup()`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def cleanup(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def log_tail(self, lines: int = 40) -> str:
        logs = sorted((self.workdir / "logs").glob("*"), key=lambda p: p.stat().st_mtime) if self._dir else []
        if not logs:
            return "(no log)"
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    # -- REST ----------------------------------------------------------------------------------

    def rest(self, method: str, path: str, body: object | None = None, timeout: float = 10.0):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{HOST}:{self.http_port}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as rsp:
                payload = rsp.read()
        except urllib.error.HTTPError as exc:
            raise OrthancError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from exc
        return json.loads(payload) if payload else None

    def instance_count(self) -> int:
        return int(self.rest("GET", "/statistics")["CountInstances"])

    def delete_instance(self, sop_uid: str) -> None:
        ids = self.rest("POST", "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}})
        if len(ids) != 1:
            raise OrthancError(f"SOP Instance {sop_uid}: {len(ids)} matches in Orthanc")
        self.rest("DELETE", f"/instances/{ids[0]}")

    # -- loading -------------------------------------------------------------------------------

    def load(self, paths_or_dir: str | Path | Iterable[str | Path], timeout: float = 60.0) -> None:
        """C-STORE files and/or folders (recursively) with dcmtk storescu, as a modality would."""
        paths = [paths_or_dir] if isinstance(paths_or_dir, (str, Path)) else list(paths_or_dir)
        cmd = [STORESCU_BIN, "-aet", "LOADER", "-aec", self.aet, "+sd", "+r", HOST, str(self.dicom_port),
               *map(str, paths)]
        result = subprocess.run(cmd, env=_nodelay_env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise OrthancError(f"storescu exited with {result.returncode}:\n{result.stdout}{result.stderr}")


# -- test data ---------------------------------------------------------------------------------

@dataclass
class SeriesSpec:
    modality: str
    instances: int = 1
    uid: str = field(default_factory=generate_uid)
    sop_uids: list[str] = field(default_factory=list)  # filled by write_instances if empty

    def __post_init__(self) -> None:
        if not self.sop_uids:
            self.sop_uids = [generate_uid() for _ in range(self.instances)]
        self.instances = len(self.sop_uids)


@dataclass
class StudySpec:
    patient_id: str
    study_date: date
    series: list[SeriesSpec]
    uid: str = field(default_factory=generate_uid)

    @property
    def modalities(self) -> set[str]:
        return {s.modality for s in self.series}

    @property
    def instance_count(self) -> int:
        return sum(s.instances for s in self.series)


def write_instances(directory: str | Path, studies: Iterable[StudySpec]) -> list[Path]:
    """Small valid DICOM files (CT Image for modality CT, Secondary Capture otherwise; 2x2 pixels),
    one per SOP Instance of the specs, as `directory/<sop uid>.dcm`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for study in studies:
        for series_number, series in enumerate(study.series, start=1):
            for instance_number, sop_uid in enumerate(series.sop_uids, start=1):
                ds = _instance(study, series, series_number, instance_number, sop_uid)
                path = directory / f"{sop_uid}.dcm"
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
    return written


def _instance(study: StudySpec, series: SeriesSpec, series_number: int, instance_number: int,
              sop_uid: str) -> Dataset:
    sop_class = CT_IMAGE if series.modality == "CT" else SECONDARY_CAPTURE
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = f"TEST^{study.patient_id}"
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = study.study_date.strftime("%Y%m%d")
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series_number
    ds.Modality = series.modality
    ds.InstanceNumber = instance_number
    if sop_class == CT_IMAGE:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study.uid, "frame of reference"])
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [0, 0, instance_number]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1, 1]
        ds.SliceThickness = 1
        ds.KVP = ""
        ds.AcquisitionNumber = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
    else:
        ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(8)
    return ds
