"""The event channel's tokens, in a module (a database) of its own: once a token exists, every request
of the module's other tests would need one."""

from __future__ import annotations

import json

import pytest
from pydicom.uid import generate_uid
from websockets.exceptions import ConnectionClosed

from testkit.http import http_app
from testkit.ups import GLOBAL, ups_association, workitem
from workflow.kernel.json_model import build

pytestmark = pytest.mark.slow

AFFECTED_UID = "00001000"


def subscribe(app, ae_title: str) -> None:
    outcome = app.worklist.subscribe(GLOBAL, build(ReceivingAE=ae_title, DeletionLock="FALSE"), websocket=True)
    assert outcome.status.code == 0, outcome


def create(app) -> str:
    uid = generate_uid()
    with ups_association(app.dicom.port) as assoc:
        assert assoc.send_n_create(workitem(), "1.2.840.10008.5.1.4.34.6.1", uid)[0].Status == 0
    return uid


def test_the_channel_needs_a_token_with_the_subscribe_right(database_url):
    """Once a token exists: no token, or one without the subscribe right, is closed with 1008; the right
    one opens the channel, its scheme named in any case ("bearer"), in the URL or in the console's cookie."""
    from websockets.sync.client import connect

    with http_app(database_url) as app:
        subscriber = app.tokens.create("WSTOKEN", "subscribe")
        reader = app.tokens.create("WSREADER", "read")
        url = f"ws://127.0.0.1:{app.http.port}/dicom-web/subscribers/WSTOKEN"
        for headers in (None, {"Authorization": f"Bearer {reader}"}, {"Authorization": f"Basic {subscriber}"}):
            with connect(url, additional_headers=headers, open_timeout=10) as refused:
                with pytest.raises(ConnectionClosed) as closed:
                    refused.recv(timeout=10)
            assert closed.value.rcvd.code == 1008 and "subscribe right" in closed.value.rcvd.reason
        subscribe(app, "WSTOKEN")
        for how in ({"additional_headers": {"Authorization": f"bearer {subscriber}"}},
                    {"additional_headers": {"Cookie": f"wfm_token={subscriber}"}}, {"query": subscriber}):
            target = url + (f"?access_token={how.pop('query')}" if "query" in how else "")
            with connect(target, open_timeout=10, **how) as channel:
                uid = create(app)
                while json.loads(channel.recv(timeout=15))[AFFECTED_UID]["Value"] != [uid]:
                    pass  # what the subscription got earlier (the server's status, earlier workitems)
