"""Small pieces of English shared by the evaluation's reasons, template checks and `describe`."""

from __future__ import annotations

import heapq
from typing import Callable, Iterable


def seconds_text(seconds: float) -> str:
    """600 -> "600 s (10 min)", 3600 -> "3600 s (1 h)", 1.5 -> "1.5 s"."""
    s = int(seconds) if float(seconds).is_integer() else seconds
    if isinstance(s, int) and s >= 60 and s % 60 == 0:
        minutes = s // 60
        return f"{s} s ({minutes // 60} h)" if minutes % 60 == 0 else f"{s} s ({minutes} min)"
    return f"{s} s"


def sop_class_text(uid: str) -> str:
    """"CT Image Storage (1.2.840.10008.5.1.4.1.1.2)", or the UID and why it has no name."""
    from pydicom.uid import UID_dictionary

    entry = UID_dictionary.get(uid)
    return f"{entry[0]} ({uid})" if entry else f"{uid} (a SOP Class not in the DICOM dictionary)"


def uid_list(uids: Iterable[str], fmt: Callable[[str], str] = lambda u: u, limit: int = 5) -> str:
    """Sorted, the first `limit` shown: "1.1, 1.2 and 4 more" (only those are sorted: a study's
    200,000 missing instances are not sorted to name five)."""
    items = uids if isinstance(uids, (set, frozenset, list, tuple)) else list(uids)
    shown = ", ".join(fmt(u) for u in heapq.nsmallest(limit, items))
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
