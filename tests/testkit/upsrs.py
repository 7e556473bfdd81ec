"""UPS-RS in tests: a small client of the Worklist Service (PS3.18 chapter 11) speaking DICOM JSON over a
real HTTP connection, and the DIMSE test workitem as DICOM JSON."""

from __future__ import annotations

from typing import Any

import httpx
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from testkit.http import client
from workflow.ups.http_request import query_params

DICOM_JSON = "application/dicom+json"
BASE = "/dicom-web/workitems"


def as_json(ds: Dataset) -> dict[str, Any]:
    """A pydicom data set as DICOM JSON, empty elements kept as {"vr": ...}."""
    return ds.to_json_dict()


def warning_of(response: httpx.Response) -> str:
    return response.headers.get("warning", "")


class UpsRs:
    """One UPS-RS user agent (its own keep-alive connection)."""

    def __init__(self, app, token: str | None = None) -> None:
        self.http = client(app, token)
        self.http.headers["Accept"] = DICOM_JSON

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "UpsRs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, method: str, url: str, ds: Any = None, **kwargs) -> httpx.Response:
        if ds is not None:
            kwargs["json"] = ds
            kwargs.setdefault("headers", {})["Content-Type"] = DICOM_JSON
        return self.http.request(method, url, **kwargs)

    def create(self, ds: dict | Dataset, uid: str | None = None) -> httpx.Response:
        ds = as_json(ds) if isinstance(ds, Dataset) else ds
        return self._send("POST", BASE, ds, params={"workitem": uid} if uid else None)

    def retrieve(self, uid: str) -> httpx.Response:
        return self.http.get(f"{BASE}/{uid}")

    def update(self, uid: str, ds: dict, txn: str | None, name: str = "transaction-uid") -> httpx.Response:
        return self._send("POST", f"{BASE}/{uid}", ds, params={name: txn} if txn else None)

    def change_state(self, uid: str, state: str, txn: str | None, **more: dict) -> httpx.Response:
        ds: dict[str, Any] = {"00741000": {"vr": "CS", "Value": [state]}}
        if txn:
            ds["00081195"] = {"vr": "UI", "Value": [txn]}
        ds.update(more)
        return self._send("PUT", f"{BASE}/{uid}/state", ds)

    def claim(self, uid: str, txn: str | None = None) -> tuple[httpx.Response, str]:
        txn = txn or generate_uid()
        return self.change_state(uid, "IN PROGRESS", txn), txn

    def cancel_request(self, uid: str, ds: dict | None = None) -> httpx.Response:
        return self._send("POST", f"{BASE}/{uid}/cancelrequest", ds)

    def search(self, params: list[tuple[str, str]] | dict | None = None) -> httpx.Response:
        return self.http.get(BASE, params=params)

    def search_like(self, identifier: dict) -> httpx.Response:
        """The Search a C-FIND Identifier (DICOM JSON) stands for."""
        return self.search(query_params(identifier))

    def subscribe(self, uid: str, ae_title: str, **params: str) -> httpx.Response:
        return self.http.post(f"{BASE}/{uid}/subscribers/{ae_title}", params=params or None)

    def unsubscribe(self, uid: str, ae_title: str) -> httpx.Response:
        return self.http.delete(f"{BASE}/{uid}/subscribers/{ae_title}")

    def suspend(self, uid: str, ae_title: str) -> httpx.Response:
        return self.http.post(f"{BASE}/{uid}/subscribers/{ae_title}/suspend")


def uids(response: httpx.Response) -> list[str]:
    """The SOP Instance UIDs of a Search's matches, in order ([] for 204)."""
    if response.status_code == 204:
        return []
    return [m["00080018"]["Value"][0] for m in response.json()]
