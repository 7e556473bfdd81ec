"""The garbage collector tuned for a long-running server.

CPython's defaults (a young collection every 700 net allocations, a full one every 100 young ones)
suit scripts. A server holds a large, long-lived heap (modules, compiled SQL, pynetdicom's tables),
and one request can allocate hundreds of thousands of objects (a workitem listing 50,000 inputs):
with the defaults, the collector ran dozens of times inside such a request and each full pass walked
the whole heap, ~40% of an N-GET's time. Reference counting frees nearly everything we allocate;
the cyclic collector only has to catch cycles (pynetdicom's associations), which it still does.
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # net container allocations between young collections (CPython: 700)
OLDER = 20  # young collections per middle one, and middle ones per full one (CPython: 10, 10)


def settle() -> None:
    """Once start-up is done: move what exists now out of the collector's sight (it lives as long as
    the process) and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, OLDER, OLDER)
