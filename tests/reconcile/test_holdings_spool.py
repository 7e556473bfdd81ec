"""The disk-backed sorter: any order in, key order out, duplicates merged, bounded memory, no leftovers."""

from __future__ import annotations

import pytest

import random
import subprocess
import sys
import textwrap
from pathlib import Path

from workflow.reconcile.rules.holdings import Holding
from workflow.reconcile.rules.compare import Expected, Tally, compare
from workflow.reconcile.spool import HoldingSpool


def holding(study: int, series: int, sop: int, **kw) -> Holding:
    return Holding(f"1.2.3.{study}", f"1.2.3.{study}.{series}", f"1.2.3.{study}.{series}.{sop}", **kw)


def test_sorts_any_order(tmp_path):
    records = [holding(st, se, so, sop_class_uid="1.2.840.10008.5.1.4.1.1.2", availability="ONLINE",
                       retrieve_ae="ARCH", retrieve_url=f"http://a/{st}", removed=so == 3)
               for st in range(12) for se in range(3) for so in range(5)]
    random.Random(7).shuffle(records)
    with HoldingSpool(tmp_path, batch=17, chunk=5) as spool:
        assert spool.add_many(iter(records)) == len(records)
        out = list(spool.sorted())
        assert out == sorted(records, key=lambda h: h.key)  # every field comes back as it went in
        # Code-point order: "1.2.3.10" sorts before "1.2.3.2", as the merge-join expects.
        assert list(spool.studies()) == sorted({h.study_uid for h in records})
        assert list(spool.sorted("1.2.3.4")) == [h for h in out if h.study_uid == "1.2.3.4"]


def test_duplicates_are_merged_in_arrival_order():
    with HoldingSpool() as spool:
        spool.add(holding(1, 1, 1, availability="NEARLINE", retrieve_ae="TAPE", retrieve_url="http://old"))
        spool.add(holding(2, 1, 1))
        spool.add(holding(1, 1, 1, availability="ONLINE", retrieve_ae="DISK", retrieve_url="http://new"))
        spool.add(holding(1, 1, 1, removed=True))
        out = list(spool.sorted())
        assert spool.count == 4 and len(out) == 2
        assert out[0] == holding(1, 1, 1, availability="ONLINE", retrieve_ae="DISK\\TAPE",
                                 retrieve_url="http://new", removed=True)


def test_adds_after_a_read_are_seen():
    with HoldingSpool() as spool:
        spool.add(holding(2, 1, 1))
        assert [h.study_uid for h in spool.sorted()] == ["1.2.3.2"]
        spool.add(holding(1, 1, 1))
        assert [h.study_uid for h in spool.sorted()] == ["1.2.3.1", "1.2.3.2"]


def test_feeds_the_merge_join():
    actual = [holding(st, 1, so, availability="ONLINE") for st in range(20) for so in range(10)]
    random.Random(3).shuffle(actual)
    expected = [Expected(holding(st, 1, so, availability="ONLINE")) for st in range(20) for so in range(10)]
    expected.sort(key=lambda e: e.holding.key)
    with HoldingSpool() as spool:
        spool.add_many(actual)
        tally = Tally()
        assert list(compare(expected, spool.sorted(), tally=tally)) == []
        assert tally.matched == 200


def test_removes_its_files(tmp_path):
    spool = HoldingSpool(tmp_path)
    spool.add(holding(1, 1, 1))
    assert any(tmp_path.iterdir())
    spool.close()
    spool.close()  # twice is harmless
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_memory_stays_bounded():
    """200,000 records in a fresh interpreter: peak RSS grows by far less than the records' size
    (~100 MB as Python objects)."""
    code = textwrap.dedent("""
        import resource
        from workflow.reconcile.rules.holdings import Holding
        from workflow.reconcile.spool import HoldingSpool
        N, P = 200_000, 200_003
        def records():
            for i in range(N):
                j = (i * 7919) % P
                yield Holding(f"1.2.826.0.1.3680043.8.498.{j // 100}", f"1.2.826.0.1.3680043.8.498.{j // 100}.1",
                              f"1.2.826.0.1.3680043.8.498.{j // 100}.1.{j}", "1.2.840.10008.5.1.4.1.1.2", "ONLINE", "ARCH")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with HoldingSpool() as spool:
            spool.add_many(records())
            last, n = None, 0
            for h in spool.sorted():
                assert last is None or h.key > last
                last, n = h.key, n + 1
        print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent, timeout=110)
    n, grown_mib = map(int, out.stdout.split())
    assert n == 200_000
    assert grown_mib < 40, f"peak RSS grew by {grown_mib} MiB"
