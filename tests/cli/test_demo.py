"""`wfm demo` as a newcomer runs it: the whole story in under a minute, each step named, and no
process left behind (at the end, on Ctrl-C); `--keep` leaves the servers running until killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.cli import wfm

pytestmark = pytest.mark.slow

STEPS = [
    "reference archive REFARCH listening on 127.0.0.1:",
    "wfm server WFM listening on 127.0.0.1:",
    "subscriber SUBSCRIBER (an Event SCP on 127.0.0.1:",
    "scheduler creates workitem ",
    "modality CT1 starts MPPS ",
    "modality stores 3 of its 4 images at REFARCH",
    "modality completes MPPS: 4 images in 1 series performed: 0x0000 Success",
    "a workstation stores a secondary capture at REFARCH; seeded fault: it is never announced",
    "REFARCH's IAN reaches wfm: 4 images ONLINE at REFARCH, status 0x0000",
    "workitem INCOMPLETE -> READY: Input Information of 1 series item, 4 images at REFARCH",
    "subscriber's State Reports so far: SCHEDULED/INCOMPLETE, SCHEDULED/READY",
    "performer claims the workitem: IN PROGRESS, Transaction UID ",
    "the subscriber heard: SCHEDULED/INCOMPLETE, SCHEDULED/READY, IN PROGRESS/READY, COMPLETED/READY",
    "`wfm reconcile run REFARCH`: COMPLETED, found 1 MISSING_IN_ARCHIVE, 1 UNEXPECTED_IN_ARCHIVE",
    "`wfm report verify` says OK",
]


def pids_in(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"\(pid (\d+),", output)]


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def started_in(folder: Path) -> list[int]:
    """Processes whose command line names the folder (the demo's servers do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and running(int(entry.name)):
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if running(p)]


def test_demo_tells_the_whole_story_in_under_a_minute(tmp_path):
    folder = tmp_path / "demo"
    started = time.monotonic()
    done = wfm("demo", "--folder", str(folder), timeout=90)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < 60, f"took {elapsed:.1f} s"
    steps = [line for line in done.stdout.splitlines() if re.match(r"\[ *\d+\.\d s\] +\d+\. ", line)]
    assert len(steps) == len(STEPS), done.stdout
    for number, (line, expected) in enumerate(zip(steps, STEPS), 1):
        assert f"{number:2}. " in line and expected in line, f"step {number}: {line!r} lacks {expected!r}"
    assert (folder / "report.html").read_text().count("MISSING_IN_ARCHIVE") >= 1

    pids = pids_in(done.stdout)
    assert len(pids) == 2
    assert not [p for p in pids if running(p)], "a server outlived the demo"
    assert not started_in(folder)

    # The commands it suggests work on what it left.
    workitem = re.search(r"scheduler creates workitem ([\d.]+)", done.stdout).group(1)
    assert f"wfm ups show {workitem}" in done.stdout
    shown = wfm("ups", "show", workitem, env={"WFM_CONFIG": str(folder / "wfm.toml")})
    assert "ProcedureStepState (0074,1000) CS: COMPLETED" in shown.stdout.splitlines(), shown.stderr


def test_demo_keep_leaves_the_servers_until_killed(tmp_path):
    folder = tmp_path / "demo"
    done = wfm("demo", "--keep", "--folder", str(folder), timeout=90)
    pids = pids_in(done.stdout)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(pids) == 2 and all(running(p) for p in pids), done.stdout
        kill = re.search(r"^  kill ([\d ]+)$", done.stdout, re.MULTILINE).group(1).split()
        assert sorted(map(int, kill)) == sorted(pids)
        port = re.search(r"wfm server WFM listening on 127.0.0.1:(\d+)", done.stdout).group(1)
        created = wfm("ups", "create", "--port", port, "--label", "After the demo")
        assert created.returncode == 0, created.stderr
    finally:
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGTERM)
    assert not wait_gone(pids)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_stops_what_the_demo_started(tmp_path, inherited):
    """Also when the demo starts with SIGINT ignored, as a shell's background job (`wfm demo &`) does."""
    folder = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFM_")}
    demo = subprocess.Popen([sys.executable, "-m", "workflow", "demo", "--folder", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_ignore_sigint if inherited == "ignored" else None)
    seen = []
    try:
        for line in demo.stdout:
            seen.append(line)
            if "wfm server WFM listening" in line:
                break
        pids = pids_in("".join(seen))
        assert len(pids) == 2, "".join(seen)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 130
        assert "interrupted; stopping what it started" in demo.stderr.read()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert not wait_gone(pids, timeout=0.5)  # stopped before the demo exited
    assert not started_in(folder)


def test_a_port_another_program_takes_first_is_chosen_again(tmp_path):
    """The demo picks free ports, but another program may bind one before the child does: the archive
    and the server then start on another port (the server with its configuration written again)."""
    import io
    import socket

    from workflow.demo.story import ARCHIVE, SERVER, Story

    story = Story(tmp_path, io.StringIO())
    taken = {}
    try:
        for name in (ARCHIVE, SERVER):
            taken[name] = socket.socket()
            taken[name].bind(("127.0.0.1", story.ports[name]))
            taken[name].listen()
        story.start_archive()
        story.start_server()
        assert all(story.ports[name] != sock.getsockname()[1] for name, sock in taken.items())
        assert f"port = {story.ports[SERVER]}\n" in story.config.read_text()
        assert [c.process.poll() for c in story.children] == [None, None]  # the failed tries are not kept
    finally:
        story.stop()
        for sock in taken.values():
            sock.close()
