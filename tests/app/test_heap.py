"""`wfm serve` settles its heap once started (workflow/heap.py): a request allocating a large answer
(a workitem listing 50,000 inputs builds ~150,000 dicts) no longer runs the collector dozens of times,
each full pass walking everything the process holds."""

from __future__ import annotations

import subprocess
import sys

BURST = """
import gc, sys
from workflow import heap
if sys.argv[1] == "settled":
    heap.settle()
runs = []
gc.callbacks.append(lambda phase, info: phase == "start" and runs.append(info["generation"]))
kept = [{"00081150": {"vr": "UI", "Value": ["1.2"]}, "00081155": {"vr": "UI", "Value": [str(i)]}}
        for i in range(50_000)]
print(len(runs), runs.count(2))
"""


def _collections(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", BURST, mode], capture_output=True, text=True, check=True)
    total, full = out.stdout.split()
    return int(total), int(full)


def test_a_large_answer_runs_the_collector_rarely_once_settled():
    default_total, _ = _collections("default")
    settled_total, settled_full = _collections("settled")
    assert default_total >= 100  # CPython's defaults: a young collection every 700 allocations
    assert settled_total <= default_total // 20
    assert settled_full == 0
