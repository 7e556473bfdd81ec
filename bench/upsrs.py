#!/usr/bin/env python3
"""UPS-RS Search latency and claims per second beside the same over DIMSE (C-FIND, N-ACTION), in one run
against one `wfm serve` (both faces, same process, same database), at the sizes of bench/ups_find.py:
100,000 SCHEDULED + 1,000,000 finished workitems, seeded and queried as that benchmark does (its
seeding, query plan and DIMSE client are reused). Target: UPS-RS search p95 <= the C-FIND p95 of the
same query.

    python bench/upsrs.py               # full size, by hand (seeding ~5 min a backend)
    python bench/upsrs.py --smoke       # tiny, to keep the script working (the test suite runs it)
    python bench/upsrs.py --scheduled 100000 --finished 300000 --backend sqlite

Each planned query is sent over both faces, one after the other, the face going first alternating; the
two answers must name the same workitems in the same order (exit status 1 otherwise). C-FIND latency is
from the C-FIND-RQ to the final response, all matches decoded by pynetdicom; UPS-RS latency is from the
request to the parsed JSON body (one keep-alive HTTP/1.1 connection, httpx). The UPS-RS query is the
C-FIND Identifier as Search parameters (`workflow.ups.http_request.query_params`: matching keys as
`Keyword=value`, sequence items as dotted paths, return keys as includefield). Claims: half of the
sampled workitems claimed by N-ACTION (one association), half by PUT /state (one connection).
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from ups_find import (QUERY_NAMES, Client, Process, Worklist, arguments, backends, claim_infos, free_port,
                      percentile, prepare, server_env, sizes_of, wait_listening)
from workflow.ups.http_request import query_params


@dataclass
class Timings:
    dimse: list[float] = field(default_factory=list)
    rs: list[float] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)


@dataclass
class Result:
    name: str
    queries: dict[str, Timings]
    dimse_claims_per_s: float
    rs_claims_per_s: float
    claims: int


class RsClient:
    def __init__(self, port: int) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                                 headers={"Accept": "application/dicom+json"})

    def search(self, identifier: dict) -> tuple[float, list[str]]:
        params = query_params(identifier)
        started = time.perf_counter()
        response = self.http.get("/dicom-web/workitems", params=params)
        found = response.json() if response.status_code == 200 else []
        seconds = time.perf_counter() - started
        if response.status_code not in (200, 204):
            raise RuntimeError(f"UPS-RS search failed: {response.status_code} {response.headers.get('warning')}")
        return seconds, [m["00080018"]["Value"][0] for m in found]

    def claims(self, uids: list[str]) -> float:
        started = time.perf_counter()
        for uid in uids:
            response = self.http.put(f"/dicom-web/workitems/{uid}/state", headers={
                "Content-Type": "application/dicom+json"}, content=(
                '{"00741000":{"vr":"CS","Value":["IN PROGRESS"]},'
                f'"00081195":{{"vr":"UI","Value":["{generate_uid()}"]}}}}'))
            if response.status_code != 200:
                raise RuntimeError(f"UPS-RS claim of {uid} failed: {response.status_code} "
                                   f"{response.headers.get('warning')}")
        return time.perf_counter() - started

    def close(self) -> None:
        self.http.close()


def run_backend(name: str, url: str, worklist: Worklist, args, tmp: Path) -> Result:
    warmup, measured, to_claim = prepare(name, url, worklist, args)
    timings = {kind: Timings() for kind in QUERY_NAMES}
    port, http_port = free_port(), free_port()
    env = server_env(url, port, WFM_HTTP_PORT=str(http_port))
    with Process([sys.executable, "-m", "workflow", "serve"], port, tmp / f"wfm-rs-{name}.log", env) as server:
        wait_listening(http_port, server.proc, server.log)
        dimse, rs = Client(port, "WFM"), RsClient(http_port)
        try:
            for n, (q, timed) in enumerate([(q, False) for q in warmup] + [(q, True) for q in measured]):
                identifier = q.ds.to_json_dict()
                kept: list = []
                if n % 2:  # the face going first alternates: neither always finds a warm cache
                    rs_seconds, rs_uids = rs.search(identifier)
                    dimse_seconds, matches = dimse.find(q.ds, kept)
                else:
                    dimse_seconds, matches = dimse.find(q.ds, kept)
                    rs_seconds, rs_uids = rs.search(identifier)
                dimse_uids = [str(ds.SOPInstanceUID) for ds in kept]
                if rs_uids != dimse_uids:
                    raise RuntimeError(f"{QUERY_NAMES[q.kind]}: UPS-RS answered {rs_uids}, C-FIND {dimse_uids} "
                                       f"({'UPS-RS' if n % 2 else 'C-FIND'} first) to {query_params(identifier)}")
                if timed:
                    timings[q.kind].dimse.append(dimse_seconds)
                    timings[q.kind].rs.append(rs_seconds)
                    timings[q.kind].matches.append(matches)
            half = args.claims // 2
            infos = claim_infos(to_claim)
            dimse.claims(infos[:2])
            rs.claims([uid for uid, _ in infos[2:4]])  # warm-up, both faces
            dimse_rate = half / dimse.claims(infos[4:4 + half])
            rs_rate = half / rs.claims([uid for uid, _ in infos[4 + half:4 + 2 * half]])
        finally:
            dimse.close()
            rs.close()
    return Result(name, timings, dimse_rate, rs_rate, half)


def print_tables(results: list[Result]) -> bool:
    """Print the tables; True when every query kept RS p95 <= C-FIND p95."""
    header = (f"{'backend':<11} {'query':<34} {'matches':>7} {'find p50':>8} {'find p95':>8} "
              f"{'rs p50':>8} {'rs p95':>8} {'rs/find p95':>11} {'rs<=find':>8}")
    print(header)
    print("-" * len(header))
    met = True
    for r in results:
        for kind, t in r.queries.items():
            f50, f95 = percentile(t.dimse, 50) * 1000, percentile(t.dimse, 95) * 1000
            r50, r95 = percentile(t.rs, 50) * 1000, percentile(t.rs, 95) * 1000
            met &= r95 <= f95
            print(f"{r.name:<11} {QUERY_NAMES[kind]:<34} {sum(t.matches) / len(t.matches):>7.1f} {f50:>8.1f} "
                  f"{f95:>8.1f} {r50:>8.1f} {r95:>8.1f} {r95 / f95:>11.2f} {'yes' if r95 <= f95 else 'NO':>8}")
    print("(latencies in ms; find: C-FIND-RQ to the final response; rs: UPS-RS Search request to the parsed "
          "JSON; the same workitems in the same order, checked)")
    print()
    header = f"{'backend':<11} {'claims':>6} {'N-ACTION/s':>10} {'UPS-RS/s':>9} {'rs/dimse':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.name:<11} {r.claims:>6} {r.dimse_claims_per_s:>10.1f} {r.rs_claims_per_s:>9.1f} "
              f"{r.rs_claims_per_s / r.dimse_claims_per_s:>8.2f}")
    print("(claims to IN PROGRESS: N-ACTION 1 on one association; PUT /state on one HTTP connection)")
    return met


def main() -> int:
    parser = arguments(__doc__.split("\n\n")[0])
    args = parser.parse_args()
    if args.claims < 4:
        parser.error("--claims must be at least 4")
    sizes = sizes_of(parser, args)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="wfm-bench-upsrs-") as tmp:
        for name, url in backends(args, Path(tmp)):
            results.append(run_backend(name, url, Worklist(sizes, args.seed), args, Path(tmp)))
    met = print_tables(results)
    print(f"# target (UPS-RS search p95 <= C-FIND p95 for every query): {'met' if met else 'NOT met'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
