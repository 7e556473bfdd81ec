"""Attribute Identifier List (0000,1005) in N-CREATE responses.

PS3.7 Annex C lets a Missing Attribute (0120) or Missing Attribute Value (0121) response name the
attributes concerned. pynetdicom 3.0 knows the field for N-SET and N-GET but not for N-CREATE, and
silently drops it there; this registers it, once, at import.
"""

from __future__ import annotations

from pynetdicom import dimse_messages
from pynetdicom.dimse_primitives import N_CREATE

_KEYWORD = "AttributeIdentifierList"


def enable_n_create_attribute_identifier_list() -> None:
    fields = dimse_messages._COMMAND_SET_KEYWORDS["N-CREATE-RSP"]
    if _KEYWORD not in fields:
        dimse_messages._COMMAND_SET_KEYWORDS["N-CREATE-RSP"] = fields + (_KEYWORD,)
    if _KEYWORD not in N_CREATE.STATUS_OPTIONAL_KEYWORDS:
        N_CREATE.STATUS_OPTIONAL_KEYWORDS = N_CREATE.STATUS_OPTIONAL_KEYWORDS + (_KEYWORD,)
    if not hasattr(N_CREATE, _KEYWORD):
        N_CREATE.AttributeIdentifierList = None  # type: ignore[attr-defined]


enable_n_create_attribute_identifier_list()
