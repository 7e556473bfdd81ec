"""The Orthanc bridge (contrib/orthanc/wfm_bridge.py) in Debian's Orthanc with its Python and DICOMweb
plugins: dcmtk's storescu stores a study, Orthanc's stability timer fires, the bridge announces the study
over wfm's HTTP face with a token, `wfm study` shows every instance ONLINE at Orthanc (and at its
DICOMweb URL), and a workitem waiting for the study goes READY. wfm stopped while Orthanc notifies
loses nothing: the IANs wait in the bridge's queue and arrive after the restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from testkit.db import test_settings
from testkit.http import free_port
from testkit.orthanc import OrthancServer, SeriesSpec, StudySpec, require_orthanc, write_instances
from testkit.ups import PUSH, get, ups_association, workitem
from workflow.app import App
from workflow.overview.study import study_report

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "contrib" / "orthanc" / "wfm_bridge.py"
PYTHON_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPython.so")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AET = "ORTHANC"


def _require_plugins() -> None:
    require_orthanc()
    missing = [str(p) for p in (PYTHON_PLUGIN, DICOMWEB_PLUGIN) if not p.exists()]
    if missing:
        from testkit.orthanc import REQUIRE_ORTHANC
        reason = f"{', '.join(missing)} not installed (Debian packages orthanc-python, orthanc-dicomweb)"
        if REQUIRE_ORTHANC:
            pytest.fail(reason)
        pytest.skip(reason)


class World:
    """wfm (HTTP on a fixed port, so a restarted wfm is where Orthanc expects it) and Orthanc with the
    bridge. Readiness without MPPS: READY one second after the last IAN, every instance ONLINE."""

    def __init__(self, database_url: str, tmp: Path) -> None:
        self.database_url, self.tmp = database_url, tmp
        self.policies = tmp / "policies"
        self.policies.mkdir()
        shipped = (ROOT / "policies" / "default.toml").read_text()
        assert "settled = 600" in shipped
        (self.policies / "default.toml").write_text(shipped.replace("settled = 600", "settled = 1"))
        self.http_port = free_port()
        self.app = self.start_wfm()
        self.token = self.app.tokens.create("orthanc", "notify")
        self.orthanc = OrthancServer(aet=AET, stable_age=1, extra_config={
            "Plugins": [str(PYTHON_PLUGIN), str(DICOMWEB_PLUGIN)],
            "PythonScript": str(BRIDGE),
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": "127.0.0.1:{http_port}"},
            "WorkflowManager": {"Url": f"http://127.0.0.1:{self.http_port}", "Token": self.token,
                                "QueueDirectory": "{workdir}/wfm-queue", "RetryMaxInterval": 1},
        })
        self.orthanc.start()

    def start_wfm(self) -> App:
        app = App(test_settings(self.database_url, http_port=self.http_port, policies=str(self.policies)))
        app.start()
        return app

    @property
    def queue(self) -> Path:
        return self.orthanc.workdir / "wfm-queue"

    def waiting(self) -> list[str]:
        return sorted(p.name for p in self.queue.glob("*.json"))

    def store(self, *studies: StudySpec) -> None:
        folder = self.tmp / generate_uid()
        write_instances(folder, studies)
        self.orthanc.load(folder)

    def wfm(self, *args: str) -> subprocess.CompletedProcess:
        config = self.tmp / "cli.toml"
        config.write_text(f'database_url = "{self.database_url}"\n')
        return subprocess.run([sys.executable, "-m", "workflow", *args, "--config", str(config)],
                              capture_output=True, text=True, timeout=60)

    def close(self) -> None:
        self.orthanc.stop()
        self.orthanc.cleanup()
        self.app.stop()


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    _require_plugins()
    world = World(database_url, tmp_path_factory.mktemp("bridge"))
    yield world
    world.close()


def wait_for(condition, within: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        time.sleep(0.1)


def announced(world: World, study: StudySpec) -> dict | None:
    """What wfm knows of the study once it names every instance, else None."""
    report = study_report(world.app.engine, study.uid)
    return report if report and len(report["instances"]) == study.instance_count else None


def test_a_stable_study_is_announced_and_the_workitem_waiting_for_it_goes_ready(world):
    study = StudySpec("BRIDGE1", date(2026, 12, 1), [SeriesSpec("CT", 3), SeriesSpec("OT", 2)])
    uid = generate_uid()
    with ups_association(world.app.dicom.port) as assoc:
        status, _ = assoc.send_n_create(workitem(StudyInstanceUID=study.uid, InputReadinessState="INCOMPLETE"),
                                        PUSH, uid)
        assert status.Status in (0x0000, 0xB300)
    world.store(study)

    wait_for(lambda: announced(world, study), what="the study announced")
    shown = world.wfm("study", study.uid, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    sops = {sop for series in study.series for sop in series.sop_uids}
    assert {i["sop_instance_uid"] for i in report["instances"]} == sops
    for instance in report["instances"]:
        assert instance["availability"] == "ONLINE" and instance["retrieve_ae_titles"] == [AET]
        assert instance["retrieve_url"] == (
            f"http://127.0.0.1:{world.orthanc.http_port}/dicom-web/studies/{study.uid}/series/"
            f"{instance['series_instance_uid']}/instances/{instance['sop_instance_uid']}")
    [notification] = report["notifications"]
    assert notification["calling_ae_title"] == "orthanc"  # the token's name: who announced it
    assert notification["instance_count"] == study.instance_count

    def ready():
        with ups_association(world.app.dicom.port) as assoc:
            status, ds = get(assoc, uid, "InputReadinessState", "InputInformationSequence")
        listed = {ref.ReferencedSOPInstanceUID for item in ds.InputInformationSequence
                  for ref in item.ReferencedSOPSequence}
        return ds.InputReadinessState == "READY" and listed == sops
    wait_for(ready, what="READY")
    assert world.waiting() == []

    # The DICOMweb URL the IAN names is where the instance is.
    import urllib.request
    some = report["instances"][0]
    with urllib.request.urlopen(some["retrieve_url"] + "/metadata", timeout=10) as answer:
        assert json.loads(answer.read())[0]["00080018"]["Value"] == [some["sop_instance_uid"]]


def test_wfm_down_while_orthanc_notifies_loses_nothing(world):
    before = StudySpec("BRIDGE2", date(2026, 12, 2), [SeriesSpec("CT", 2)])
    while_down = [StudySpec(f"BRIDGE{n}", date(2026, 12, 3), [SeriesSpec("CT", 2), SeriesSpec("OT", 1)])
                  for n in (3, 4)]
    world.store(before)
    wait_for(lambda: announced(world, before), what="the first study")

    world.app.stop()
    for study in while_down:
        world.store(study)
    # Both studies became stable while wfm was away: their IANs wait in the queue, retried.
    wait_for(lambda: len(world.waiting()) == 2, what="two IANs queued")
    wait_for(lambda: "did not take IAN" in world.orthanc.log_tail(200), what="a failed attempt")
    world.app = world.start_wfm()
    for study in while_down:
        report = wait_for(lambda: announced(world, study), what=f"study {study.patient_id} after the restart")
        assert {i["availability"] for i in report["instances"]} == {"ONLINE"}
        assert len(report["notifications"]) == 1
    wait_for(lambda: world.waiting() == [], what="the queue drained")


def test_the_queue_survives_an_orthanc_restart(world):
    study = StudySpec("BRIDGE5", date(2026, 12, 4), [SeriesSpec("CT", 2)])
    world.app.stop()
    world.store(study)
    wait_for(lambda: len(world.waiting()) == 1, what="the IAN queued")
    world.orthanc.stop()  # Orthanc goes down with the IAN undelivered...
    world.orthanc.start()  # ...and comes back (same storage and queue folder, new ports)
    assert len(world.waiting()) == 1
    world.app = world.start_wfm()
    report = wait_for(lambda: announced(world, study), what="the study after both restarts")
    assert len(report["notifications"]) == 1
    wait_for(lambda: world.waiting() == [], what="the queue drained")
