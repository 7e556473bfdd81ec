"""The web console's part of the statement: not DICOM, but every HTTP resource the server answers is
listed; rendered from the console's own table of resources."""

from __future__ import annotations

from workflow.console.pages import RESOURCES
from workflow.conformance.markdown import table


def render_console() -> str:
    rows = [(method, f"`{path}`", right, what) for method, path, right, what in RESOURCES]
    return f"""### 3.6 Web console (HTTP, non-DICOM)

With `http_port` set, the HTTP face also serves a web console under `/ui` (server-rendered HTML; works
without JavaScript for reading; the worklist's live updates use a WebSocket). It needs no DICOM
conformance; its resources are listed here because the statement names every HTTP resource. Access is
the API's: the `query` right to read, `admin` to change, open while no API token exists. Forms that
change something carry a CSRF token (double-submit cookie, SameSite=Strict) and are refused (403) from
another origin. Changes go through the same services as the DICOM face, with the same statuses.

{table(("Method", "Path", "Right", "What"), rows)}
"""
