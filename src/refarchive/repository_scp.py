"""Repository Query (PS3.4 C.6.4): the Study Root C-FIND SCP plus ordered, resumable listing.

- Record Key (0008,041B), when asked for, is the entity's UIDs down to the query level joined by a
  NUL byte (OB, padded to even length with one more NUL). Responses are always in that order, the
  byte order of the UIDs in which the Study Root SCP already lists them.
- Prior Record Key (0008,041C) continues after that entity: a row-value comparison on the UIDs, so
  no state is kept between transactions (C.6.4.5.3 allows this). A key that does not decode to as
  many UIDs as the level has is refused with A710.
- Maximum Number of Records (0008,0429), and the archive's own limit per transaction (`page_limit`):
  when either is reached and more entities match, the final status is B001 (C.6.4.5.2).
- Removed from Operational Use is answered at STUDY, SERIES and IMAGE level (the Study Root SCP
  does so already): a removed study or series makes its instances say Y.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from refarchive.find_scp import LEVEL_KEYS, StudyRootFind
from refarchive.matching import Where
from refarchive.responses import status

_COLUMNS = {"STUDY": ("st.study_uid",), "SERIES": ("st.study_uid", "se.series_uid"),
            "IMAGE": ("st.study_uid", "se.series_uid", "i.sop_instance_uid")}
_REQUEST_ONLY = ("PriorRecordKey", "MaximumNumberOfRecords")


def record_key(uids: tuple[str, ...]) -> bytes:
    key = "\0".join(uids).encode("ascii")
    return key + b"\0" * (len(key) % 2)


def parse_record_key(value: bytes, level: str) -> tuple[str, ...] | None:
    try:
        uids = tuple(bytes(value).rstrip(b"\0").decode("ascii").split("\0"))
    except (UnicodeDecodeError, TypeError):
        return None
    return uids if len(uids) == len(LEVEL_KEYS[level]) and all(uids) else None


class RepositoryQuery(StudyRootFind):
    def __init__(self, holdings, faults, page_limit: int = 10_000) -> None:
        super().__init__(holdings, faults)
        self.page_limit = page_limit

    def _narrow(self, identifier: Dataset, level: str, where: Where) -> Dataset | None:
        prior = identifier.get("PriorRecordKey")
        if not prior:
            return None
        after = parse_record_key(prior, level)
        if after is None:
            return status(0xA710, f"Prior Record Key is not a {level} Record Key of this archive")
        columns = _COLUMNS[level]
        where.add(f"({', '.join(columns)}) > ({', '.join('?' * len(columns))})", *after)
        return None

    def _limit(self, identifier: Dataset) -> int:
        asked = identifier.get("MaximumNumberOfRecords")
        try:
            wanted = int(asked) if asked not in (None, "") else 0
        except (TypeError, ValueError):
            wanted = 0
        return min(wanted, self.page_limit) if wanted > 0 else self.page_limit

    def _echoed(self, identifier: Dataset) -> Dataset:
        request = Dataset()
        for elem in identifier:
            if elem.keyword not in _REQUEST_ONLY:
                request.add(elem)
        return request

    def _decorate(self, known: dict, level: str) -> None:
        known["RecordKey"] = record_key(tuple(known[k] for k in LEVEL_KEYS[level]))
