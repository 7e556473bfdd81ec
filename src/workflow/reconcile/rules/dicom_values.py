"""Values out of DICOM data, as reconciliation reads them: an element's text values (blank ones
dropped) and a Date with a Time as a datetime. pydicom values in, Python values out."""

from __future__ import annotations

from datetime import datetime

from pydicom.multival import MultiValue


def text_values(value) -> list[str]:
    """The non-blank values of an element's value (absent, single or multi-valued), stripped."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [str(v).strip() for v in items if str(v).strip()]


def parse_date_time(da: str, tm: str) -> datetime | None:
    """DA + TM (local time, as DICOM without an offset means) as a datetime; None if unreadable."""
    da, tm = (da or "").strip(), (tm or "").strip().replace(":", "")
    try:
        day = datetime.strptime(da, "%Y%m%d")
    except ValueError:
        return None
    whole, _, fraction = tm.partition(".")
    try:
        parts = [int(whole[i:i + 2]) for i in range(0, min(len(whole), 6), 2)]
        micro = int((fraction + "000000")[:6]) if fraction else 0
        return day.replace(hour=parts[0] if parts else 0, minute=parts[1] if len(parts) > 1 else 0,
                           second=parts[2] if len(parts) > 2 else 0, microsecond=micro)
    except ValueError:
        return day
