"""`wfm serve` as operators run it: a real process, a TOML file, SIGTERM, a restart on the same
database; and the `wfm` commands that read what it stored."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset, FileDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from testkit.ian import association, instance_item, make_ian, send

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wfm(*args: str, config: Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflow", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=check)


class Served:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "workflow", "serve", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("a"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(self.log.read_text())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(database_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    config = tmp / "wfm.toml"
    config.write_text(f'database_url = "{database_url}"\nhost = "127.0.0.1"\nport = {port}\nhttp_port = 0\n'
                      f'ae_title = "WFM"\nshutdown_grace = 20\nlog_level = "DEBUG"\n\n'
                      f'[[remote_ae]]\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\nport = 11113\n')
    server = Served(config, port, tmp / "wfm.log")
    server.start()
    yield server
    if server.proc.poll() is None:
        server.proc.kill()


def test_store_stop_restart_and_report(served):
    ian = make_ian(pps_uid="1.2.3.4.5")
    with association(served.port) as assoc:
        status, uid = send(assoc, ian)
    assert status.Status == 0
    assert served.stop() == 0  # SIGTERM: clean stop, exit status 0
    served.start()  # same database
    shown = json.loads(wfm("study", ian.StudyInstanceUID, "--json", config=served.config).stdout)
    assert shown["study_instance_uid"] == ian.StudyInstanceUID
    assert len(shown["instances"]) == 3
    assert {i["availability"] for i in shown["instances"]} == {"ONLINE"}
    assert shown["instances"][0]["retrieve_ae_titles"] == ["PACS"]
    assert shown["instances"][0]["locations"][0]["ae_title"] == "PACS"
    assert shown["notifications"][0]["sop_instance_uid"] == uid
    assert shown["notifications"][0]["calling_ae_title"] == "MODALITY"
    # The same IAN again after the restart is still recognised as a retry.
    with association(served.port) as assoc:
        again, _ = send(assoc, ian, uid)
    assert again.Status == 0
    table = wfm("study", ian.StudyInstanceUID, config=served.config).stdout
    assert "3 instances, 1 notifications" in table and "PACS" in table


def test_log_lines_are_json_naming_the_caller(served):
    ian = make_ian()
    with association(served.port, calling_ae="LOGTEST") as assoc:
        send(assoc, ian)
    line = wait_for_log(served, lambda r: r.get("calling_ae") == "LOGTEST" and "status" in r)
    assert line["sop_class"] == "1.2.840.10008.5.1.4.33"
    assert line["study_instance_uid"] == ian.StudyInstanceUID
    assert line["status"] == "0000" and line["outcome"] == "stored"
    assert line["sop_instance"] and line["peer"].startswith("127.0.0.1:")


def test_unknown_study_exits_1(served):
    result = wfm("study", "1.2.3.999", config=served.config, check=False)
    assert result.returncode == 1
    assert "unknown study" in result.stderr


def test_ian_send_builds_ians_from_files(served, tmp_path):
    study = generate_uid()
    for i, series in enumerate([generate_uid(), generate_uid()]):
        for j in range(2):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(str(tmp_path / f"{i}{j}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.save_as(tmp_path / f"{i}{j}.dcm", enforce_file_format=True)
    (tmp_path / "notes.txt").write_text("not DICOM")
    result = wfm("ian", "send", str(tmp_path), "--port", str(served.port), "--availability", "NEARLINE",
                 "--retrieve-ae", "ARCHIVE", "--retrieve-url", "http://archive/studies/{study}/series/{series}",
                 config=served.config)
    assert f"study {study}: 4 instances" in result.stdout and "status 0x0000" in result.stdout
    shown = json.loads(wfm("study", study, "--json", config=served.config).stdout)
    assert len(shown["instances"]) == 4
    assert {i["availability"] for i in shown["instances"]} == {"NEARLINE"}
    assert {i["retrieve_url"].split("/series/")[0] for i in shown["instances"]} == {f"http://archive/studies/{study}"}


def test_ian_send_reports_a_refusal(served, tmp_path):
    result = wfm("ian", "send", str(tmp_path), "--port", str(served.port), "--retrieve-ae", "X",
                 config=served.config, check=False)
    assert result.returncode == 1 and "no DICOM instances" in result.stderr


def test_db_current_and_config_show(served):
    assert wfm("db", "current", config=served.config).stdout.strip().endswith("(up to date)")
    shown = json.loads(wfm("config", "show", "--json", config=served.config).stdout)
    assert shown["remote_ae"] == [{"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 11113,
                                   "status_change": False, "tls": False}]
    assert shown["port"] == served.port
    if "@" in shown["database_url"] and ":" in shown["database_url"].split("@")[0].split("//")[1]:
        assert "***" in shown["database_url"]


def test_bad_config_fails_at_start_with_file_key_and_reason(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('port = "eleven"\n')
    result = subprocess.run([sys.executable, "-m", "workflow", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert str(config) in result.stderr and "'port'" in result.stderr and "int" in result.stderr


def _log_records(served) -> list[dict]:
    return [json.loads(line) for line in served.log.read_text().splitlines() if line.startswith("{")]


def wait_for_log(served, predicate, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in _log_records(served):
            if predicate(record):
                return record
        time.sleep(0.02)
    raise TimeoutError("log line not seen")


def test_sigterm_lets_a_request_in_flight_commit(served):
    """SIGTERM arrives while an 8,000-instance IAN is being handled: it is answered, committed, kept."""
    ian = make_ian(series={generate_uid(): [instance_item() for _ in range(8_000)]})
    uid = generate_uid()
    result = {}

    def sender():
        with association(served.port) as assoc:
            result["status"], _ = send(assoc, ian, uid)

    thread = threading.Thread(target=sender)
    thread.start()
    wait_for_log(served, lambda r: r.get("msg") == "IAN received" and r.get("sop_instance") == uid)
    assert served.stop() == 0
    thread.join(30)
    assert result["status"].Status == 0x0000
    served.start()
    shown = json.loads(wfm("study", ian.StudyInstanceUID, "--json", config=served.config).stdout)
    assert len(shown["instances"]) == 8_000


def test_ian_send_works_against_another_ian_scp(tmp_path):
    """A plain pynetdicom IAN SCP that only speaks Implicit VR Little Endian gets a valid IAN."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import InstanceAvailabilityNotification
    from pydicom.uid import ImplicitVRLittleEndian

    received = []

    def on_n_create(event):
        received.append((event.request.AffectedSOPInstanceUID, event.attribute_list))
        return 0x0000, None

    ae = AE(ae_title="OTHERSCP")
    ae.add_supported_context(InstanceAvailabilityNotification, ImplicitVRLittleEndian)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_N_CREATE, on_n_create)])
    try:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(tmp_path / "a.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
        result = subprocess.run([sys.executable, "-m", "workflow", "ian", "send", str(tmp_path / "a.dcm"),
                                 "--port", str(port), "--aec", "OTHERSCP", "--retrieve-ae", "PACS"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        [(uid, ian)] = received
        assert uid and ian.StudyInstanceUID == ds.StudyInstanceUID
        item = ian.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert (item.ReferencedSOPInstanceUID, item.InstanceAvailability, item.RetrieveAETitle) == (
            ds.SOPInstanceUID, "ONLINE", "PACS")
        assert "ReferencedPerformedProcedureStepSequence" in ian
    finally:
        server.shutdown()


def test_policies_check_and_a_server_that_refuses_a_bad_policy(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "workflow", "policies", "check"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and "default.toml" in ok.stdout
    bad = tmp_path / "policies"
    bad.mkdir()
    (bad / "site.toml").write_text('[[policy]]\nname = "x"\n[policy.complete_when]\nsettled = "soon"\n')
    check = subprocess.run([sys.executable, "-m", "workflow", "policies", "check", str(bad)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and "site.toml" in check.stderr and "settled" in check.stderr
    config = tmp_path / "wfm.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "x.db"}"\nhost = "127.0.0.1"\nport = {free_port()}\nhttp_port = 0\n'
                      f'policies = "{bad}"\n')
    serve = subprocess.run([sys.executable, "-m", "workflow", "serve", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and "site.toml" in serve.stderr and "settled" in serve.stderr


def test_policies_init_then_an_edit_and_sighup_put_the_edit_in_force(tmp_path):
    """The site's own copy of the policies: made by `wfm policies init`, read by `wfm serve`, edited, and
    in force after SIGHUP: the edited policy makes a workitem READY that the shipped one kept INCOMPLETE."""
    from testkit.ups import PUSH, get, ups_association, workitem

    folder = tmp_path / "site-policies"
    init = subprocess.run([sys.executable, "-m", "workflow", "policies", "init", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert f'policies = "{folder}"' in init.stdout.splitlines()
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "default.toml"]
    (folder / "default.toml").write_text("# mine\n" + (folder / "default.toml").read_text())
    again = subprocess.run([sys.executable, "-m", "workflow", "policies", "init", str(folder)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and f"{folder / 'default.toml'} exists" in again.stderr
    assert (folder / "default.toml").read_text().startswith("# mine")  # never overwritten

    port = free_port()
    config = tmp_path / "wfm.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "wfm.db"}"\nhost = "127.0.0.1"\nport = {port}\nhttp_port = 0\n'
                      f'readiness_delay = 0.02\npolicies = "{folder}"\n')
    server = Served(config, port, tmp_path / "wfm.log")
    server.start()
    try:
        wait_for_log(server, lambda r: r.get("msg", "").startswith(f"policies loaded from {folder}: default.toml;"))
        study, series = generate_uid(), generate_uid()
        uid = generate_uid()
        with ups_association(port) as assoc:
            assert assoc.send_n_create(workitem(StudyInstanceUID=study, InputReadinessState="INCOMPLETE"),
                                       PUSH, uid)[0].Status in (0x0000, 0xB300)

        def announce(count: int) -> None:
            with association(port) as assoc:
                status, _ = send(assoc, make_ian(study, {series: [instance_item() for _ in range(count)]}))
            assert status.Status == 0

        def inputs_when(done) -> tuple[str, int]:
            deadline = time.monotonic() + 20
            while True:
                with ups_association(port) as assoc:
                    _, ds = get(assoc, uid, "InputReadinessState", "InputInformationSequence")
                found = (ds.InputReadinessState, sum(len(i.ReferencedSOPSequence) for i in ds.InputInformationSequence))
                if done(found) or time.monotonic() > deadline:
                    return found
                time.sleep(0.05)

        announce(2)  # no MPPS: the shipped policy waits 600 s of quiet, so the inputs are listed, not READY
        assert inputs_when(lambda f: f[1] == 2) == ("INCOMPLETE", 2)
        text = (folder / "default.toml").read_text()
        assert "{ settled = 600 }" in text
        (folder / "default.toml").write_text(text.replace("{ settled = 600 }", "{ expected_count = 3 }"))
        server.proc.send_signal(signal.SIGHUP)
        wait_for_log(server, lambda r: r.get("msg", "").startswith(f"policies reloaded from {folder}: default.toml;"))
        announce(1)  # a third instance: the edited policy (3 instances, no MPPS) decides READY
        assert inputs_when(lambda f: f[0] == "READY") == ("READY", 3)
    finally:
        assert server.stop() == 0


def test_a_bad_policy_set_is_refused_whole_on_reload(tmp_path):
    from workflow.app import App
    from workflow.config import Settings
    policies = tmp_path / "policies"
    policies.mkdir()
    shipped = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
    (policies / "default.toml").write_text(shipped.read_text())
    app = App(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", policies=str(policies)))
    before = app.policies
    assert app.reload_policies() and app.policies is not before
    kept = app.policies
    (policies / "zz-bad.toml").write_text('[[policy]]\nname = 3\n')
    assert not app.reload_policies()
    assert app.policies is kept and app.readiness.policies is kept
    app.engine.dispose()


def test_a_bearer_token_never_reaches_the_log(tmp_path):
    """A WebSocket subscriber may carry its token in the URL (`?access_token=`), and uvicorn logs each
    WebSocket's URL: the log shows the request with the token, accepted or refused, blanked out."""
    import asyncio

    import websockets

    port, http_port = free_port(), free_port()
    config = tmp_path / "wfm.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "wfm.db"}"\nhost = "127.0.0.1"\nport = {port}\n'
                      f'http_port = {http_port}\n')
    wfm("db", "upgrade", config=config)
    token = wfm("token", "create", "watcher", "--rights", "subscribe", config=config).stdout.strip()
    wrong = token[:-4] + "AAAA"
    server = Served(config, port, tmp_path / "wfm.log")
    server.start()

    async def open_channel(secret: str) -> None:
        url = f"ws://127.0.0.1:{http_port}/dicom-web/subscribers/WATCHER?access_token={secret}"
        async with websockets.connect(url, open_timeout=20) as socket:
            if secret == wrong:
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(socket.recv(), 20)

    try:
        wait_for_log(server, lambda r: r.get("msg", "").startswith("HTTP on "))
        asyncio.run(open_channel(token))
        asyncio.run(open_channel(wrong))
        wait_for_log(server, lambda r: r.get("msg") == "event channel closed")
        wait_for_log(server, lambda r: r.get("msg", "").startswith("event channel refused"))
    finally:
        assert server.stop() == 0
    text = server.log.read_text()
    accepted = [r["msg"] for r in _log_records(server) if "WebSocket /dicom-web/subscribers/WATCHER" in r["msg"]]
    assert len(accepted) == 2 and all("access_token=[redacted]" in line for line in accepted), accepted
    assert token not in text and wrong not in text and token[4:20] not in text


def test_a_library_warning_is_a_json_log_line_too():
    """pydicom warns (warnings.warn) about values peers send; the log stays one JSON object a line."""
    script = ("from workflow.logs import setup_logging; setup_logging('INFO', json_lines=True)\n"
              "import warnings; warnings.warn('Invalid value for VR UI: 1.2.*', UserWarning)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 0 and lines and all(line.startswith("{") for line in lines), done.stderr
    record = json.loads(lines[0])
    assert record["level"] == "WARNING" and "Invalid value for VR UI" in record["msg"]
