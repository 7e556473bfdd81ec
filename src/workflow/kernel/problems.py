"""Rule violations found while checking a data set against an attribute table, and which one the
answer reports. Shared by the UPS (Table CC.2.5-3) and MPPS (Table F.7.2-1) checks."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from workflow.kernel import statuses
from workflow.kernel.statuses import Status


class Op(Enum):
    CREATE = "N-CREATE"
    SET = "N-SET"


class Problem(NamedTuple):
    status: Status
    tag: str
    path: str
    text: str


# When a data set breaks several rules, the answer is the first kind found here, listing all its tags
# (the order dcm4che's ValidationResult uses).
PRECEDENCE = (statuses.NO_SUCH_ATTRIBUTE, statuses.MISSING_ATTRIBUTE, statuses.MISSING_ATTRIBUTE_VALUE,
              statuses.INVALID_ATTRIBUTE_VALUE)


def first_kind(problems: list[Problem]) -> tuple[Status, str, tuple[str, ...], str] | None:
    """(status, comment, tags, path) of the kind that wins, or None when there is no problem."""
    for status in PRECEDENCE:
        found = [p for p in problems if p.status == status]
        if found:
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            return status, found[0].text + more, tuple(dict.fromkeys(p.tag for p in found)), found[0].path
    return None


def where(path: tuple, keyword: str) -> str:
    """"Seq[0].Keyword" from a path of (sequence keyword, item index) pairs."""
    return "".join(f"{path[i]}[{path[i + 1]}]." for i in range(0, len(path), 2)) + keyword


def problem(status: Status, rule, path: tuple, what: str) -> Problem:
    inside = f" in {path[0]}" if path else ""
    return Problem(status, rule.tag, where(path, rule.keyword), f"{rule.keyword} {rule.tag_text} {what}{inside}")
