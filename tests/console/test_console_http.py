"""The web console over plain HTTP (no browser): each page's content for a seeded database, the
worklist's filters and keyset pages, the live channel, the actions through the services, and the API's
access rules (login cookie, read-only without admin, CSRF)."""

from __future__ import annotations

import json
import re
import time

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from console_seed import seed
from testkit.db import query_plan
from testkit.http import client, http_app, mounted_routes
from testkit.ups import claim, ups_association
from workflow.access.tokens import Tokens
from workflow.console import views


@pytest.fixture(scope="module")
def app(database_url):
    with http_app(database_url) as app:
        yield app


@pytest.fixture(scope="module")
def seeded(app):
    return seed(app)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def cookies(**values: str) -> dict[str, str]:
    # The console's cookies are Secure (kept by browsers on the loopback); httpx keeps Secure cookies for
    # HTTPS only, so the tests send them as a browser would.
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in values.items())}


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-uid="([^"]+)"', html)


def test_home_opens_the_worklist(app, seeded):
    with client(app) as http:
        home = http.get("/", follow_redirects=False)
        assert home.status_code == 303 and home.headers["location"] == "/ui/worklist"
        page = http.get("/ui/worklist")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert set(rows(page.text)) == set(seeded.workitems.values())
    assert "Smith, Anna" in page.text and "(PID100)" in page.text and "CT001 (CT001)" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # The chart and its numbers: today's column counts the five SCHEDULED workitems.
    assert "<svg" in page.text and 'id="chart-numbers"' in page.text
    today = re.search(r"<tr><th scope=\"row\">" + time.strftime("%Y-%m-%d") + r"</th>(.*?)</tr>", page.text).group(1)
    assert re.findall(r'<td class="n">(\d+)</td>', today)[-1] == "5"


@pytest.mark.parametrize("query, expected", [
    ("worklist_label=CT-NIGHT", {"ct_head", "ct_chest"}),
    ("worklist_label=CT*", {"ct_head", "ct_chest"}),
    ("priority=HIGH", {"ct_head", "xr_wrist"}),
    ("priority=HIGH&worklist_label=XR-DAY", {"xr_wrist"}),
    ("station=CT001", {"ct_head", "ct_chest"}),
    ("patient=Smith*", {"ct_head"}),
    ("patient=smith*", {"ct_head"}),
    ("patient=SMITH^ANNA", {"ct_head"}),
    ("patient=pid200", set()),  # a Patient ID is matched as written
    ("patient=PID200", {"mr_knee"}),
    ("state=SCHEDULED&readiness=INCOMPLETE", {"ct_head", "mr_knee", "ct_chest", "us_abdomen", "xr_wrist"}),
    ("state=COMPLETED", set()),
    ("from=2001-01-01&to=2001-01-31", set()),
])
def test_filters_narrow_the_list(app, seeded, query, expected):
    with client(app) as http:
        page = http.get(f"/ui/worklist?{query}")
    assert page.status_code == 200
    assert set(rows(page.text)) == {seeded.workitems[n] for n in expected}


def test_the_patient_search_is_two_index_reads(app):
    """Patient ID or name, with a wild card: each side on its index, not a read of every workitem."""
    query = select(views.W.c.sop_instance_uid).where(*views.worklist_conditions(views.WorklistFilter(patient="SMITH*")))
    plan = query_plan(app.engine, query)
    assert "ix_workitem_patient_id" in plan and "ix_workitem_patient_name_folded" in plan, plan


def test_a_bad_filter_is_a_400_page_naming_it(app, seeded):
    with client(app) as http:
        for query, named in (("state=DONE", "state"), ("from=yesterday", "from"), ("sort=size", "sort"),
                             ("after=x", "after")):
            page = http.get(f"/ui/worklist?{query}")
            assert page.status_code == 400 and named in page.text and "<html" in page.text


@pytest.mark.parametrize("sort", ["start", "-start"])
def test_keyset_pages_walk_the_whole_list_in_order(app, seeded, sort):
    whole = views.worklist_page(app.engine, views.WorklistFilter(sort=sort)).rows
    walked, after = [], ""
    while True:
        page = views.worklist_page(app.engine, views.WorklistFilter(sort=sort, after=after), limit=2)
        walked += page.rows
        if page.next_after is None:
            break
        after = page.next_after
    assert [r.uid for r in walked] == [r.uid for r in whole] and len(whole) >= 5
    starts = [r.start for r in whole]
    assert starts == sorted(starts, reverse=sort == "-start")


def test_workitem_page(app, seeded):
    uid = seeded.workitems["ct_head"]
    with client(app) as http:
        page = http.get(f"/ui/workitems/{uid}")
        assert http.get(f"/ui/workitems/{generate_uid()}").status_code == 404
    text = page.text
    assert page.status_code == 200 and uid in text
    # Inputs by series, each instance with its availability per location and the Retrieve AE.
    for series in seeded.series:
        assert f"Series {series}" in text
    assert text.count("VAULT: NEARLINE") == 2 and text.count("PACS: ONLINE") == 5 and "Retrieve AE: PACS" in text
    # The explain view and the attribute tree.
    assert app.readiness.explain(uid, views.datetime.now(views.timezone.utc))["policy"] in text
    assert "PatientName" in text and "Smith^Anna" in text and "(0010,0010)" in text
    # Open mode: every request is an administrator's, so the actions are offered.
    assert 'action="/ui/workitems/' + uid + '/priority"' in text


def test_study_page_and_search(app, seeded):
    with client(app) as http:
        page = http.get(f"/ui/studies/{seeded.study_uid}")
        assert http.get(f"/ui/studies/{generate_uid()}").status_code == 404
        by_uid = http.get(f"/ui/studies?q={seeded.study_uid}", follow_redirects=False)
        by_accession = http.get("/ui/studies?q=ACC100")
        by_patient = http.get("/ui/studies?q=Smith*")
        nothing = http.get("/ui/studies?q=NOBODY")
    text = page.text
    counts = re.search(r'id="availability-counts">(.*?)</table>', text, re.S).group(1)
    cells = {ae: re.findall(r'<td class="n">(\d+)</td>', row)
             for ae, row in re.findall(r'<th scope="row">(\w+)</th>(.*?)</tr>', counts)}
    assert cells == {"PACS": ["5", "0", "0", "0", "0"], "VAULT": ["0", "2", "0", "0", "3"]}
    assert "<svg" in text and text.count("<rect") == 10  # 5 instances x 2 locations
    assert "MODALITY" in text and "VAULT" in text  # notifications, from whom
    assert seeded.workitems["ct_head"] in text and "ACC100" in text
    assert by_uid.status_code == 303 and by_uid.headers["location"] == f"/ui/studies/{seeded.study_uid}"
    assert seeded.study_uid in by_accession.text and seeded.study_uid in by_patient.text
    assert "1 study found" in by_accession.text and "0 studies found" in nothing.text


def test_reconciliation_pages(app, seeded):
    with client(app) as http:
        listing = http.get("/ui/reconciliations")
        page = http.get(f"/ui/reconciliations/{seeded.run_uid}")
        missing_only = http.get(f"/ui/reconciliations/{seeded.run_uid}?reason=MISSING_IN_ARCHIVE")
        assert http.get(f"/ui/reconciliations/{seeded.run_uid}?reason=LOST").status_code == 400
        assert http.get(f"/ui/reconciliations/{generate_uid()}").status_code == 404
        for fmt in ("json", "csv", "html"):
            assert f'href="/api/reconciliations/{seeded.run_uid}?format={fmt}"' in page.text
            assert http.get(f"/api/reconciliations/{seeded.run_uid}?format={fmt}").status_code == 200
    assert seeded.run_uid in listing.text and "MISSING_IN_ARCHIVE: 3" in listing.text and "last 7 days" in listing.text
    text = page.text
    assert "Verified: the stored findings match" in text
    assert f"Study <a class=\"uid\" href=\"/ui/studies/{seeded.study_uid}\">{seeded.study_uid}</a>: 3 finding(s)" in text
    assert all(uid in text for uid in seeded.missing) and seeded.other_study in text
    assert seeded.other_study not in missing_only.text and all(uid in missing_only.text for uid in seeded.missing)


def test_a_changed_report_shows_unverified(app, seeded):
    from sqlalchemy import update
    from workflow.reconcile.tables import DiscrepancyRow as D
    with app.engine.begin() as conn:
        conn.execute(update(D).where(D.sop_instance_uid == seeded.missing[0]).values(detail="edited"))
    try:
        with client(app) as http:
            text = http.get(f"/ui/reconciliations/{seeded.run_uid}").text
        assert "NOT verified: the run or its findings changed since the report was recorded" in text
    finally:
        with app.engine.begin() as conn:
            conn.execute(update(D).where(D.sop_instance_uid == seeded.missing[0])
                         .values(detail="announced by IAN, not held"))


def test_events_page_and_retry(app, seeded):
    from datetime import timedelta
    from workflow.kernel.clock import utcnow
    uid = seeded.workitems["ct_head"]
    # A UPS-RS subscriber whose channel is closed: its State Report waits in the outbox.
    assert app.worklist.subscribe(uid, {"00741234": {"vr": "AE", "Value": ["WATCHER"]},
                                        "00741230": {"vr": "LO", "Value": ["FALSE"]}}, websocket=True).status.code == 0
    with client(app) as http:
        page = http.get("/ui/events")
        assert "WATCHER: 1 pending, 0 undeliverable" in page.text and uid in page.text
        assert 'action="/ui/events/retry"' not in page.text  # nothing to retry yet
        assert app.outbox.expire_websocket_events(utcnow() + timedelta(days=365)) == 1
        page = http.get("/ui/events")
        assert "WATCHER: 0 pending, 1 undeliverable" in page.text and 'action="/ui/events/retry"' in page.text
        token = csrf_of(page.text)
        again = http.post("/ui/events/retry", data={"subscriber": "WATCHER", "csrf": token},
                          headers=cookies(wfm_csrf=token), follow_redirects=False)
        assert again.status_code == 303
        assert "1 event report(s) for WATCHER owed again" in http.get(again.headers["location"]).text
        assert "WATCHER: 1 pending, 0 undeliverable" in http.get("/ui/events").text


def test_status_page(app, seeded):
    with client(app) as http:
        status = http.get("/ui/status")
    text = status.text
    assert f"WFM at 127.0.0.1:{app.dicom.port}" in text and f"127.0.0.1:{app.http.port}" in text
    assert "Backlog: outbox" in text and "Backlog: readiness" in text and "Backlog: audit" in text
    assert "default" in text and "schema revision" in text and "open: no API token exists" in text


def test_live_channel_reports_a_claim(app, seeded):
    from websockets.sync.client import connect
    uid = seeded.workitems["ct_chest"]
    with connect(f"ws://127.0.0.1:{app.http.port}/ui/live", open_timeout=10) as socket:
        socket.send(json.dumps({"uids": [uid, seeded.workitems["mr_knee"]]}))
        with ups_association(app.dicom.port, calling_ae="PERFORMER") as assoc:
            assert claim(assoc, uid)[0].Status == 0
        message = json.loads(socket.recv(timeout=10))
    assert message == {"changed": [{"uid": uid, "state": "IN PROGRESS", "readiness": "INCOMPLETE"}]}


def test_actions_go_through_the_services(app, seeded):
    uid, other = seeded.workitems["mr_knee"], seeded.workitems["us_abdomen"]
    with client(app) as http:
        token = csrf_of(http.get(f"/ui/workitems/{uid}").text)
        jar = cookies(wfm_csrf=token)
        done = http.post(f"/ui/workitems/{uid}/priority", data={"priority": "HIGH", "csrf": token}, headers=jar,
                         follow_redirects=False)
        assert done.status_code == 303 and "notice=priority+now+HIGH" in done.headers["location"]
        moved = http.post(f"/ui/workitems/{uid}/reschedule", data={"start": "2031-02-03T04:05", "csrf": token},
                          headers=jar, follow_redirects=False)
        assert moved.status_code == 303 and "notice=rescheduled" in moved.headers["location"]
        cancelled = http.post(f"/ui/workitems/{other}/cancel", data={"reason": "duplicate order", "csrf": token},
                              headers=jar, follow_redirects=False)
        assert "notice=cancellation+requested" in cancelled.headers["location"]
        again = http.post(f"/ui/workitems/{other}/cancel", data={"csrf": token}, headers=jar, follow_redirects=False)
        shown = http.get(again.headers["location"]).text  # already CANCELED: the service's own status
        assert "with a warning (B304)" in shown
    ds = app.worklist.get(uid, None).dataset
    assert ds["00741200"]["Value"] == ["HIGH"] and ds["00404005"]["Value"][0].startswith("20310203040500")
    assert app.worklist.get(other, None).dataset["00741000"]["Value"] == ["CANCELED"]


@pytest.mark.parametrize("start", ["tomorrow", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_a_new_start_that_is_no_date_is_sent_back_with_the_reason(app, seeded, start):
    uid = seeded.workitems["mr_knee"]
    with client(app) as http:
        token = csrf_of(http.get(f"/ui/workitems/{uid}").text)
        moved = http.post(f"/ui/workitems/{uid}/reschedule", data={"start": start, "csrf": token},
                          headers=cookies(wfm_csrf=token), follow_redirects=False)
    assert moved.status_code == 303 and "problem=the+new+start+is+not+a+date+and+time" in moved.headers["location"]


def test_a_form_without_its_csrf_token_or_from_another_site_is_refused(app, seeded):
    uid = seeded.workitems["xr_wrist"]
    with client(app) as http:
        token = csrf_of(http.get(f"/ui/workitems/{uid}").text)
        cases = [({"priority": "LOW"}, cookies(wfm_csrf=token)),
                 ({"priority": "LOW", "csrf": "forged" * 8}, cookies(wfm_csrf=token)),
                 ({"priority": "LOW", "csrf": token}, {}),
                 ({"priority": "LOW", "csrf": token}, dict(cookies(wfm_csrf=token), Origin="http://evil.example"))]
        for form, headers in cases:
            refused = http.post(f"/ui/workitems/{uid}/priority", data=form, headers=headers, follow_redirects=False)
            assert refused.status_code == 403 and 'id="refusal"' in refused.text
    assert app.worklist.get(uid, None).dataset["00741200"]["Value"] == ["HIGH"]


def test_access_rules_are_the_apis(app, seeded):
    tokens = Tokens(app.engine)
    reader, admin, notifier = (tokens.create("cons-reader", "query"), tokens.create("cons-admin", "admin"),
                               tokens.create("cons-notify", "notify"))
    app.tokens._open_checked = None
    uid = seeded.workitems["xr_wrist"]
    try:
        with client(app) as http:
            # No token: pages go to the login page (the API answers 401, as before).
            away = http.get("/ui/worklist?priority=HIGH", follow_redirects=False)
            assert away.status_code == 303 and away.headers["location"] == "/ui/login?next=%2Fui%2Fworklist%3Fpriority%3DHIGH"
            assert http.get("/api/reconciliations").status_code == 401
            login = http.get(away.headers["location"])
            token = csrf_of(login.text)
            jar = cookies(wfm_csrf=token)
            wrong = http.post("/ui/login", data={"token": "wfm_nope", "csrf": token, "next": "/ui/worklist"},
                              headers=jar, follow_redirects=False)
            assert "failed=1" in wrong.headers["location"] and "wfm_token" not in wrong.headers.get("set-cookie", "")
            signed = http.post("/ui/login", data={"token": reader, "csrf": token, "next": "/ui/worklist?priority=HIGH"},
                               headers=jar, follow_redirects=False)
            assert signed.status_code == 303 and signed.headers["location"] == "/ui/worklist?priority=HIGH"
            cookie = signed.headers["set-cookie"].lower()
            assert f"wfm_token={reader}".lower() in cookie
            assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
            offsite = http.post("/ui/login", data={"token": reader, "csrf": token, "next": "//evil.example/"},
                                headers=jar, follow_redirects=False)
            assert offsite.headers["location"] == "/ui/worklist"
            # Read-only: the pages, no actions; an action posted anyway is refused and changes nothing.
            as_reader = cookies(wfm_token=reader, wfm_csrf=token)
            page = http.get(f"/ui/workitems/{uid}", headers=as_reader)
            assert page.status_code == 200 and "/priority" not in page.text and "Read-only" in page.text
            refused = http.post(f"/ui/workitems/{uid}/priority", data={"priority": "LOW", "csrf": token},
                                headers=as_reader, follow_redirects=False)
            assert refused.status_code == 403 and "lacks the right &#39;admin&#39;" in refused.text
            assert app.worklist.get(uid, None).dataset["00741200"]["Value"] == ["HIGH"]
            # The API reads the same cookie.
            assert http.get("/api/reconciliations", headers=as_reader).status_code == 200
            # A token without the query right sees no page.
            assert http.get("/ui/worklist", headers=cookies(wfm_token=notifier)).status_code == 403
            # The administrator changes it.
            as_admin = cookies(wfm_token=admin, wfm_csrf=token)
            assert "/priority" in http.get(f"/ui/workitems/{uid}", headers=as_admin).text
            done = http.post(f"/ui/workitems/{uid}/priority", data={"priority": "LOW", "csrf": token},
                             headers=as_admin, follow_redirects=False)
            assert done.status_code == 303 and "notice" in done.headers["location"]
            assert app.worklist.get(uid, None).dataset["00741200"]["Value"] == ["LOW"]
            out = http.post("/ui/logout", data={"csrf": token}, headers=as_admin, follow_redirects=False)
            assert out.status_code == 303 and 'wfm_token=""' in out.headers["set-cookie"]
    finally:
        for name in ("cons-reader", "cons-admin", "cons-notify"):
            tokens.revoke(name)
        app.tokens._open_checked = None


def test_the_conformance_statement_lists_every_console_resource(app):
    from starlette.routing import Mount, WebSocketRoute
    from workflow.conformance import render
    from workflow.console.pages import RESOURCES
    mounted = set()
    for route in mounted_routes(app):
        path = getattr(route, "path", "")
        if not (path == "/" or path.startswith("/ui")):
            continue
        if isinstance(route, Mount):
            mounted.add(("GET", route.path + "/{file}"))
        elif isinstance(route, WebSocketRoute):
            mounted.add(("WebSocket", route.path))
        else:
            mounted.update((m, route.path) for m in route.methods if m != "HEAD")
    assert mounted == {(method, path) for method, path, _, _ in RESOURCES}
    statement = render()
    assert all(f"`{path}`" in statement for _, path, _, _ in RESOURCES)


def test_every_control_has_a_label_and_every_page_a_title(app, seeded):
    from html.parser import HTMLParser

    class Controls(HTMLParser):
        def __init__(self):
            super().__init__()
            self.ids, self.labels, self.unlabelled, self.title, self.lang = set(), set(), [], False, None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "html":
                self.lang = a.get("lang")
            if tag == "title":
                self.title = True
            if tag == "label":
                self.labels.add(a.get("for"))
            if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
                self.ids.add(a.get("id"))
                if not a.get("id"):
                    self.unlabelled.append(a)

    pages = ["/ui/worklist", f"/ui/workitems/{seeded.workitems['ct_head']}", "/ui/studies?q=ACC100",
             f"/ui/studies/{seeded.study_uid}", "/ui/reconciliations", f"/ui/reconciliations/{seeded.run_uid}",
             "/ui/events", "/ui/status", "/ui/login"]
    with client(app) as http:
        for path in pages:
            parsed = Controls()
            parsed.feed(http.get(path).text)
            assert parsed.lang == "en" and parsed.title, path
            assert not parsed.unlabelled and parsed.ids <= parsed.labels, (path, parsed.ids - parsed.labels)
