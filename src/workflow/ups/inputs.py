"""A workitem's Input Information Sequence as the server manages it: one `workitem_input` row per
instance (adding one is O(1)), assembled into items when the workitem is read (N-GET, C-FIND, UPS-RS)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from workflow.kernel.json_model import JsonDataset
from workflow.ups.tables import WorkitemInput

INPUTS = WorkitemInput.__table__
INPUT_INFORMATION = "00404021"


def with_inputs(conn: Connection, uid: str, ds: JsonDataset) -> JsonDataset:
    """The workitem with its Input Information Sequence assembled from the server-managed rows (one
    item per series and retrieve location), when the server manages its inputs."""
    return with_rows(ds, conn.execute(_ordered(select(INPUTS).where(INPUTS.c.workitem_uid == uid))).all())


def inputs_of(conn: Connection, uids: list[str]) -> dict[str, list]:
    """The input rows of several workitems in one query (a search's matches), by workitem; pass each
    list with its data set to `with_rows`."""
    out: dict[str, list] = {}
    for r in conn.execute(_ordered(select(INPUTS).where(INPUTS.c.workitem_uid.in_(uids)))):
        out.setdefault(r.workitem_uid, []).append(r)
    return out


def _ordered(query):
    return query.order_by(INPUTS.c.workitem_uid, INPUTS.c.series_instance_uid, INPUTS.c.retrieve_ae_title,
                          INPUTS.c.sop_instance_uid)


def with_rows(ds: JsonDataset, rows) -> JsonDataset:
    """The workitem with its Input Information Sequence assembled from its input rows (as read)."""
    if not rows:
        return ds
    groups: dict[tuple, list] = {}
    for r in rows:
        key = (r.study_instance_uid, r.series_instance_uid, r.retrieve_ae_title, _url_base(r.retrieve_url),
               r.file_set_id, r.file_set_uid)
        groups.setdefault(key, []).append(r)
    out = dict(ds)
    out[INPUT_INFORMATION] = {"vr": "SQ", "Value": [_input_item(key, members) for key, members in groups.items()]}
    return out


def _url_base(url: str | None) -> str | None:
    """A WADO-RS URL of one instance names its series: items group by the series URL."""
    if url and "/instances/" in url:
        return url.split("/instances/")[0]
    return url


def _input_item(key: tuple, members: list) -> JsonDataset:
    """An Input Information item (Referenced Instances and Access macro, PS3.3 Table 10-3b)."""
    study_uid, series_uid, ae_title, url, file_set_id, file_set_uid = key
    item: JsonDataset = {
        "0040E020": {"vr": "CS", "Value": ["DICOM"]},
        "0020000D": {"vr": "UI", "Value": [study_uid]},
        "0020000E": {"vr": "UI", "Value": [series_uid]},
        "00081199": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": [m.sop_class_uid]},
                                            "00081155": {"vr": "UI", "Value": [m.sop_instance_uid]}}
                                           for m in members]},
        "0040E021": {"vr": "SQ", "Value": [{"00080054": {"vr": "AE", "Value": [ae_title]}}]},
    }
    if url:
        item["0040E025"] = {"vr": "SQ", "Value": [{"00081190": {"vr": "UR", "Value": [url]}}]}
    if file_set_uid:  # Storage Media File-Set UID is Type 1 in the item (PS3.3 Table 10-3b); the ID Type 2
        media: JsonDataset = {"00880130": {"vr": "SH"}, "00880140": {"vr": "UI", "Value": [file_set_uid]}}
        if file_set_id:
            media["00880130"]["Value"] = [file_set_id]
        item["0040E022"] = {"vr": "SQ", "Value": [media]}
    return item
