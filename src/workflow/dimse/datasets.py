"""Data sets at the DIMSE boundary: encoded request bytes -> DICOM JSON, DICOM JSON -> pydicom."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from workflow.dimse import response_fields  # noqa: F401  (Attribute Identifier List in N-CREATE-RSP)
from workflow.dimse.charsets import with_character_set
from workflow.dimse.dicom_json import dataset_bytes_to_json
from workflow.dimse.json_encoder import encoded_or_none, response_dataset
from workflow.kernel.attributes import error_comment
from workflow.kernel.statuses import CARRIES_ATTRIBUTE_LIST, Status


def request_json(raw: BytesIO | None, event) -> dict[str, Any] | None:
    """Decode a request's data set (Attribute List, Modification List, Action Information or
    Identifier) in the negotiated transfer syntax; None when the request carried none.
    Raises DecodeError for bytes that are not a data set."""
    if raw is None:
        return None
    data = raw.getvalue()
    if not data:
        return {}
    return dataset_bytes_to_json(data, str(event.context.transfer_syntax))


def to_dataset(ds: dict[str, Any] | None, context=None) -> Dataset | None:
    """The Dataset a handler returns for DICOM JSON `ds`. Given the presentation context, large
    sequences (a workitem's Input Information) are encoded directly in its Little Endian transfer
    syntax, ~10x faster than through pydicom (dimse/json_encoder.py).

    None for an empty `ds` too: pynetdicom sends a response's data set only when it is truthy, and one
    whose encoding is empty would be announced (Command Data Set Type) but never sent, leaving the
    requester waiting (PS3.7 6.3.1: no data set is Command Data Set Type 0101). A C-FIND match must not
    be empty (pynetdicom answers an empty Identifier with C312): the service gives each one a key."""
    if not ds:
        return None
    syntax = context.transfer_syntax if context is not None else None
    if syntax is not None and syntax.is_little_endian and not syntax.is_deflated:
        encoded = encoded_or_none(ds, syntax.is_implicit_VR)  # ASCII text only: no character set to declare
        if encoded is not None:
            return encoded
        return response_dataset(with_character_set(ds), syntax.is_implicit_VR)
    return Dataset.from_json(with_character_set(ds))


def status_dataset(status: Status, comment: str | None = None, tags: tuple[str, ...] = (),
                   any_status: bool = False, error_id: int | None = None) -> Dataset:
    """The status a handler returns: Status, Error Comment, and the Attribute Identifier List where
    the status allows it (0120/0121 for N-CREATE; any failure when `any_status`)."""
    ds = Dataset()
    ds.Status = status.code
    if comment:
        ds.ErrorComment = error_comment(comment)
    if error_id is not None:
        ds.ErrorID = error_id
    if tags and (any_status or status.code in CARRIES_ATTRIBUTE_LIST):
        ds.AttributeIdentifierList = [Tag(int(t, 16)) for t in tags]
    return ds
