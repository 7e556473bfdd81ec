"""Running `wfm` as a user does: a child process (`python -m workflow ...`), its output captured."""

from __future__ import annotations

import os
import subprocess
import sys


def wfm(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """`wfm ARGS` with the environment plus `env`; WFM_* settings of the test process are dropped so
    that only what the test gives counts."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WFM_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "workflow", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, stdin=subprocess.DEVNULL)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The error a command printed: exactly one line on stderr, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]
