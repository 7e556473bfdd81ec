"""The event channel's tokens, in a module (a database) of its own: once a token exists, every request
of the module's other tests would need one."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

from testkit.http import http_app
from testkit.ups import create_over_dimse, subscribe_globally

pytestmark = pytest.mark.slow

AFFECTED_UID = "00001000"


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
        subscribe_globally(app, "WSTOKEN")
        for how in ({"additional_headers": {"Authorization": f"bearer {subscriber}"}},
                    {"additional_headers": {"Cookie": f"wfm_token={subscriber}"}}, {"query": subscriber}):
            target = url + (f"?access_token={how.pop('query')}" if "query" in how else "")
            with connect(target, open_timeout=10, **how) as channel:
                uid = create_over_dimse(app)
                while json.loads(channel.recv(timeout=15))[AFFECTED_UID]["Value"] != [uid]:
                    pass  # what the subscription got earlier (the server's status, earlier workitems)
