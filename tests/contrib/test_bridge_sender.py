"""The Orthanc bridge's sender against a real wfm HTTP face (no Orthanc needed): an IAN sent twice (the
answer to the first lost) is one notification; a refused IAN is set aside, never retried; a wrong token
keeps the IAN queued until the token is right; wfm away keeps it queued."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from testkit.http import free_port, http_app

spec = importlib.util.spec_from_file_location(
    "wfm_bridge_sender", Path(__file__).resolve().parents[2] / "contrib" / "orthanc" / "wfm_bridge.py")
bridge = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bridge)

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def app(database_url):
    with http_app(database_url) as app:
        app.bridge_token = app.tokens.create("orthanc-test", "notify")
        yield app


def sender(url: str, token: str | None, folder: Path):
    settings = bridge.Settings({"WorkflowManager": {"Url": url, "Token": token, "QueueDirectory": str(folder),
                                                    "Timeout": 5}})
    queue = bridge.Queue(settings.queue)
    said = []
    return bridge.Sender(settings, queue, lambda level, message: said.append((level, message))), queue, said


def ian(study: str) -> dict:
    [one] = bridge.build_ians(study, [(f"{study}.1", CT, f"{study}.1.1")], "ORTHANC", None, 10)
    return one


def notifications(app, study: str) -> int:
    from workflow.overview.study import study_report
    report = study_report(app.engine, study)
    return len(report["notifications"]) if report else 0


def test_a_resend_after_a_lost_answer_is_one_notification(app, tmp_path):
    send, queue, _ = sender(f"http://127.0.0.1:{app.http.port}", app.bridge_token, tmp_path)
    study = bridge.new_uid()
    name = queue.put(ian(study))
    body = queue.read(name)
    assert send.post(body)[0] == 200  # taken, but suppose the answer never reached Orthanc...
    assert send.deliver(name) == "done"  # ...so the same IAN goes again
    assert queue.pending() == [] and notifications(app, study) == 1


def test_a_refused_ian_is_set_aside(app, tmp_path):
    send, queue, said = sender(f"http://127.0.0.1:{app.http.port}", app.bridge_token, tmp_path)
    broken = ian(bridge.new_uid())
    del broken["0020000D"]  # no Study Instance UID: wfm answers 400 (0120)
    name = queue.put(broken)
    assert send.deliver(name) == "failed"
    assert queue.pending() == [] and (tmp_path / "failed" / name).exists()
    assert said[-1][0] == "error" and "HTTP 400" in said[-1][1]


def test_a_wrong_token_and_an_absent_wfm_keep_the_ian_queued(app, tmp_path):
    study = bridge.new_uid()
    send, queue, said = sender(f"http://127.0.0.1:{app.http.port}", "not-a-token", tmp_path)
    name = queue.put(ian(study))
    assert send.deliver(name) == "retry" and queue.pending() == [name]
    gone, _, _ = sender(f"http://127.0.0.1:{free_port()}", app.bridge_token, tmp_path)
    assert gone.deliver(name) == "retry" and queue.pending() == [name]
    right, _, _ = sender(f"http://127.0.0.1:{app.http.port}", app.bridge_token, tmp_path)
    assert right.deliver(name) == "done" and notifications(app, study) == 1
