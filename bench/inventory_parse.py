#!/usr/bin/env python3
"""Inventory parsing speed: the streaming reader (workflow.reconcile.dimse.inventory_stream) on a whole
INSTANCE-level inventory of 1,000,000 instances, against pydicom in the same run: `dcmread` of one
of its leaf files, and the same plus a walk that pulls out what the reader pulls out.

    python bench/inventory_parse.py            # 10,000 studies x 2 series x 50 instances (run by hand)
    python bench/inventory_parse.py --smoke    # tiny, to keep the script working
    python bench/inventory_parse.py --client   # also: C-GET of the tree by InventoryHoldings, then parse

The reference archive (src/refarchive) seeds the holdings and builds the inventory; its nodes are
written as bare data sets (what C-GET delivers: no file meta) and read back from disk (mapped).
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread

from refarchive import ReferenceArchive
from workflow.reconcile.dimse.inventory_stream import EXPLICIT_VR_LE, open_inventory

SIZES = {"full": (10_000, 2, 50), "smoke": (20, 2, 5)}


def _rss_mb() -> float:
    """Peak RSS of this process. Linux's ru_maxrss survives fork + exec (a child would report its
    parent's peak), so VmHWM of the new image is read where there is one."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bare(part10: bytes) -> bytes:
    """The data set without preamble and file meta (group 0002 length at a fixed place)."""
    group_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + group_length:]


def _pydicom_walk(ds) -> int:
    """What the reader extracts per instance, by element access (forces pydicom's value decoding)."""
    n = 0
    for study in ds.InventoriedStudiesSequence:
        study.StudyInstanceUID, study.get("RetrieveAETitle"), study.get("InstanceAvailability")  # noqa: B018
        for series in study.get("InventoriedSeriesSequence", []):
            series.SeriesInstanceUID, series.get("RemovedFromOperationalUse")  # noqa: B018
            for inst in series.get("InventoriedInstancesSequence", []):
                inst.SOPClassUID, inst.SOPInstanceUID, inst.get("InstanceAvailability")  # noqa: B018
                inst.get("RemovedFromOperationalUse")  # noqa: B018
                n += 1
    return n


def parse_all(paths: list[Path], rows: bool = False) -> tuple[float, int]:
    """Every instance of the files: as Holdings (holdings()), or as the Inventory path reads them
    (rows: study_rows(), plain tuples)."""
    started = time.perf_counter()
    count = 0
    for path in paths:
        with open_inventory(path, EXPLICIT_VR_LE) as inv:
            if rows:
                for _, study in inv.study_rows():
                    count += len(study)
            else:
                for _ in inv.holdings():
                    count += 1
    return time.perf_counter() - started, count


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--parse":  # the child process: parse, report, exit
        paths = sorted(Path(sys.argv[2]).glob("node*.raw"))
        seconds, count = parse_all(paths)
        row_seconds, row_count = parse_all(paths, rows=True)
        assert row_count == count
        print(seconds, count, _rss_mb(), row_seconds)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny size")
    parser.add_argument("--record-limit", type=int, default=1000, help="study records per Inventory instance")
    parser.add_argument("--client", action="store_true", help="also retrieve the tree by C-GET with InventoryHoldings")
    args = parser.parse_args()
    studies, series, instances = SIZES["smoke" if args.smoke else "full"]
    record_limit = 5 if args.smoke else args.record_limit
    work = Path(tempfile.mkdtemp(prefix="bench-inventory-"))
    with ReferenceArchive(ae_title="REFARCH", record_limit=record_limit) as archive:
        t = time.perf_counter()
        archive.holdings.seed(studies, series, instances)
        built = archive.build_inventory("INSTANCE")
        print(f"seeded and built {studies * series * instances:,} instances in {len(built.instance_uids)} "
              f"Inventory instances: {time.perf_counter() - t:.1f} s")
        paths, size = [], 0
        for k, uid in enumerate(built.instance_uids):
            raw = _bare(archive.inventories.data(uid))
            size += len(raw)
            path = work / f"node{k}.raw"
            path.write_bytes(raw)
            paths.append(path)
        # In a process of its own, so its peak RSS is the reader's, not the archive's.
        out = subprocess.run([sys.executable, __file__, "--parse", str(work)], check=True, capture_output=True,
                             text=True).stdout.split()
        ours, count, rss, as_rows = float(out[0]), int(out[1]), float(out[2]), float(out[3])
        assert count == studies * series * instances, count
        print(f"stream reader: {count:,} instances ({size / 1e6:.0f} MB in {len(paths)} files) in {ours:.2f} s = "
              f"{ours / count * 1e6:.2f} µs/instance; peak RSS of that process {rss:.0f} MB")
        print(f"stream reader, study_rows() (tuples, as the Inventory path reads): {as_rows:.2f} s = "
              f"{as_rows / count * 1e6:.2f} µs/instance")

        leaf = max(paths, key=lambda p: p.stat().st_size)
        raw = leaf.read_bytes()
        t = time.perf_counter()
        ds = dcmread(io.BytesIO(raw), force=True)
        read = time.perf_counter() - t
        walked = _pydicom_walk(ds)
        full = time.perf_counter() - t
        per_full = full / walked * 1e6
        # dcmread leaves defined-length sequences undecoded until touched: the walk is where it pays.
        print(f"pydicom, the largest leaf ({walked:,} instances): dcmread {read:.2f} s, + walk to the same fields "
              f"{full:.2f} s = {per_full:.1f} µs/instance")
        print(f"ratio per instance: pydicom {per_full / (ours / count * 1e6):.1f}x slower; on all {count:,} "
              f"instances it would take ~{per_full * count / 1e6:.0f} s")

        if args.client:
            from workflow.reconcile.dimse.inventory_client import InventoryHoldings

            client = InventoryHoldings("BENCH", archive.ae_title, "127.0.0.1", archive.port, 60, directory=work)
            t = time.perf_counter()
            inventory = client.retrieve(built.root_uid)
            fetched = time.perf_counter() - t
            n = sum(1 for _ in inventory.holdings())
            print(f"InventoryHoldings: C-GET of {len(inventory.nodes)} instances {fetched:.2f} s, "
                  f"then {n:,} holdings in {time.perf_counter() - t - fetched:.2f} s")
            inventory.remove_files()
    for path in paths:
        path.unlink()
    work.rmdir()


if __name__ == "__main__":
    sys.exit(main())
