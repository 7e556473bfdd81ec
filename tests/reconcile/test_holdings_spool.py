"""The disk-backed sorter of study records: any order in, study order out, a study's records joined in
arrival order (so duplicates merge as they came), bounded memory, no leftovers."""

from __future__ import annotations

import pytest

import random
import subprocess
import sys
import textwrap
from pathlib import Path

from workflow.reconcile.rules.compare import Comparer, Tally, merge_runs
from workflow.reconcile.rules.holdings import holding_of
from workflow.reconcile.spool import StudySpool


def row(study: int, series: int, sop: int, availability: str = "ONLINE", ae: str = "ARCH", url: str = "",
        removed: bool = False) -> tuple:
    return (f"1.2.3.{study}", f"1.2.3.{study}.{series}", f"1.2.3.{study}.{series}.{sop}", availability, ae, url,
            removed)


def test_sorts_any_order(tmp_path):
    records = [(f"1.2.3.{st}", [row(st, se, so, url=f"http://a/{st}", removed=so == 3)
                                for se in range(3) for so in range(5)]) for st in range(12)]
    random.Random(7).shuffle(records)
    with StudySpool(tmp_path, batch=5) as spool:
        assert spool.add_many(iter(records)) == 12 * 15 and spool.records == 12
        out = list(spool.sorted())
        assert out == sorted(records)  # every field comes back as it went in
        # Code-point order: "1.2.3.10" sorts before "1.2.3.2", as the comparer expects.
        assert [s for s, _ in out] == list(spool.studies()) == sorted(s for s, _ in records)


def test_a_study_in_several_records_comes_back_once_in_arrival_order():
    with StudySpool() as spool:
        spool.add("1.2.3.1", [row(1, 1, 1, "NEARLINE", "TAPE", "http://old"), row(1, 1, 2)])
        spool.add("1.2.3.2", [row(2, 1, 1)])
        spool.add("1.2.3.1", [row(1, 1, 1, "ONLINE", "DISK", "http://new")])
        spool.add("1.2.3.1", [row(1, 1, 1, ae="", removed=True)])
        out = list(spool.sorted())
        assert spool.count == 5 and [s for s, _ in out] == ["1.2.3.1", "1.2.3.2"]
        rows = out[0][1]
        assert rows == [row(1, 1, 1, "NEARLINE", "TAPE", "http://old"), row(1, 1, 2),
                        row(1, 1, 1, "ONLINE", "DISK", "http://new"), row(1, 1, 1, ae="", removed=True)]
        merged = list(merge_runs(holding_of(r) for r in sorted(rows, key=lambda r: r[1:3])))
        assert merged[0] == holding_of(row(1, 1, 1, "ONLINE", "DISK\\TAPE", "http://new", removed=True))


def test_adds_after_a_read_are_seen():
    with StudySpool() as spool:
        spool.add("1.2.3.2", [row(2, 1, 1)])
        assert [s for s, _ in spool.sorted()] == ["1.2.3.2"]
        spool.add("1.2.3.1", [row(1, 1, 1)])
        assert [s for s, _ in spool.sorted()] == ["1.2.3.1", "1.2.3.2"]


def test_feeds_the_comparer():
    actual = [(f"1.2.3.{st}", [row(st, 1, so) for so in range(10)]) for st in range(20)]
    random.Random(3).shuffle(actual)
    expected = sorted((f"1.2.3.{st}", [row(st, 1, so, removed=False) for so in range(10)]) for st in range(20))
    with StudySpool() as spool:
        spool.add_many(actual)
        tally = Tally()
        assert list(Comparer(tally=tally).compare_studies(expected, spool.sorted())) == []
        assert tally.matched == 200


def test_removes_its_files(tmp_path):
    spool = StudySpool(tmp_path)
    spool.add("1.2.3.1", [row(1, 1, 1)])
    assert any(tmp_path.iterdir())
    spool.close()
    spool.close()  # twice is harmless
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_memory_stays_bounded():
    """200,000 instances in 2,000 records, in a fresh interpreter: peak RSS grows by far less than the
    rows' size (~60 MB as Python objects)."""
    code = textwrap.dedent("""
        import resource
        from workflow.reconcile.spool import StudySpool
        N, P = 2_000, 2_003
        def records():
            for i in range(N):
                j = (i * 7919) % P
                study = f"1.2.826.0.1.3680043.8.498.{j}"
                yield study, [(study, f"{study}.1", f"{study}.1.{k}", "ONLINE", "ARCH", "", False) for k in range(100)]
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with StudySpool() as spool:
            spool.add_many(records())
            last, n = None, 0
            for study, rows in spool.sorted():
                assert last is None or study > last
                last, n = study, n + len(rows)
        print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent, timeout=110)
    n, grown_mib = map(int, out.stdout.split())
    assert n == 200_000
    assert grown_mib < 20, f"peak RSS grew by {grown_mib} MiB"
