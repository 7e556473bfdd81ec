"""Attribute Identifier List (0000,1005) in N-ACTION responses.

Inventory Creation answers B010 with the unsupported matching keys in (0000,1005) (PS3.4 KK).
pynetdicom 3.0's N_ACTION primitive has the field, but the N-ACTION-RSP command set leaves it out,
so it is silently dropped on encoding (and not decoded by an SCU). Registered once, at import;
additive, so it changes nothing for responses that do not carry it.
"""

from __future__ import annotations

from pynetdicom import dimse_messages
from pynetdicom.dimse_primitives import N_ACTION

_KEYWORD = "AttributeIdentifierList"

if _KEYWORD not in dimse_messages._COMMAND_SET_KEYWORDS["N-ACTION-RSP"]:
    dimse_messages._COMMAND_SET_KEYWORDS["N-ACTION-RSP"] += (_KEYWORD,)
if not hasattr(N_ACTION, _KEYWORD):
    N_ACTION.AttributeIdentifierList = None  # type: ignore[attr-defined]
