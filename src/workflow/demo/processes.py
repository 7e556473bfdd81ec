"""The demo's servers as child processes: started in their own session (a Ctrl-C at the terminal is
the demo's to handle), ready once they answer C-ECHO, stopped by PID (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pynetdicom.sop_class import Verification

from workflow.dimse.client import AssociationFailed, Peer, association

PR_SET_PDEATHSIG = 1
try:  # loaded here: a child between fork and exec must not load libraries
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StartFailed(RuntimeError):
    """A child did not come up; the message ends with the tail of its log."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all(children: list[Child], grace: float = 10.0) -> None:
    """SIGTERM to each child still running, all at once; SIGKILL to any not gone after `grace` s."""
    running = [c for c in children if c.process.poll() is None]
    for child in running:
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait(5)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo dies, even by SIGKILL (Linux)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(name: str, args: list[str], log: Path, *, outlive_us: bool) -> Child:
    """`python args...` with its output in `log`. `outlive_us`: it keeps running after the demo ends."""
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=None if outlive_us or _LIBC is None else _die_with_parent)
    return Child(name, process, log)


def wait_ready(child: Child, peer: Peer, timeout: float = 30.0) -> None:
    """Until the child answers C-ECHO; StartFailed if it exits or does not answer in time."""
    deadline = time.monotonic() + timeout
    quick = Peer(peer.host, peer.port, peer.called_ae, peer.calling_ae, timeout=2.0)
    while True:
        if child.process.poll() is not None:
            raise StartFailed(f"{child.name} exited with status {child.process.returncode}:\n{child.log_tail()}")
        try:
            with association(quick, [str(Verification)]) as assoc:
                status = assoc.send_c_echo()
                if status and status.get("Status") == 0:
                    return
        except AssociationFailed:
            pass
        if time.monotonic() > deadline:
            raise StartFailed(f"{child.name} did not answer C-ECHO within {timeout:g} s:\n{child.log_tail()}")
        time.sleep(0.1)
