"""The web console's pages (non-standard, this server's own): server-rendered HTML under /ui, read with
the `query` right, changed (forms posting to the same services the DICOM and HTTP faces call) with
`admin`; the token and access rules are the API's. Read models: console/views.py; pictures:
console/charts.py; session and CSRF: console/session.py; live worklist updates (/ui/live): console/live.py."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from workflow import __version__
from workflow.access.tokens import Principal, Tokens
from workflow.audit.rules import messages
from workflow.config import Settings
from workflow.console import charts, live, session, views
from workflow.kernel import requestor
from workflow.kernel.clock import utcnow
from workflow.kernel.ports import StudyChanges
from workflow.overview.study import study_report
from workflow.readiness.service import ReadinessService
from workflow.reconcile import job as reconcile_job, reports, scheduler as reconcile_scheduler
from workflow.reconcile.rules.compare import MEANING as REASON_MEANING, Reason
from workflow.rights import Right
from workflow.store import migrate
from workflow.store.resources import policies_location
from workflow.ups.outbox import Outbox
from workflow.ups.worklist import WorklistService
from workflow.web.access import requires

log = logging.getLogger("workflow.console")
HERE = Path(__file__).parent
HTML = HTMLResponse
MAX_GRID = 2000  # instances drawn in a study's availability grid (all are listed below it)
VERIFY_INLINE = 20_000  # findings a run's page verifies as it is shown

_bearer = HTTPBearer(auto_error=False)

# Every console resource: (method, path, right, what it is). The conformance statement lists them; a
# test checks the app mounts exactly these.
RESOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/", "query", "redirect (303) to the worklist"),
    ("GET", "/ui/login", "none", "the sign-in page (an API token, kept in an HttpOnly, SameSite=Strict cookie)"),
    ("POST", "/ui/login", "none", "sign in: the token is checked, then kept for the session (12 h at most)"),
    ("POST", "/ui/logout", "none", "sign out: the session cookie is cleared"),
    ("GET", "/ui/worklist", "query", "workitems; filters state, readiness, priority, worklist_label, station, patient "
                                     "(* ? wild cards), from, to (YYYY-MM-DD); sort (start, -start); after (page cursor)"),
    ("WebSocket", "/ui/live", "query", "live updates of the worklist page's rows (state, Input Readiness)"),
    ("GET", "/ui/workitems/{uid}", "query", "a workitem: attributes, Input Information by series with availability, "
                                            "explain, event reports"),
    ("POST", "/ui/workitems/{uid}/cancel", "admin", "request cancellation (the UPS N-ACTION 2 service)"),
    ("POST", "/ui/workitems/{uid}/reschedule", "admin", "a new Scheduled Procedure Step Start DateTime (N-SET)"),
    ("POST", "/ui/workitems/{uid}/priority", "admin", "a new Scheduled Procedure Step Priority (N-SET)"),
    ("GET", "/ui/studies", "query", "study search: q = Study UID, Accession Number, Patient ID or name"),
    ("GET", "/ui/studies/{uid}", "query", "a study: series, instances, availability per location, IANs, steps, "
                                          "requested procedures, workitems"),
    ("GET", "/ui/reconciliations", "query", "runs with counts by reason; each archive's schedule, next and last run"),
    ("POST", "/ui/reconciliations/run", "admin", "start a reconciliation of a configured archive now"),
    ("GET", "/ui/reconciliations/{run_uid}", "query", "a run: verification, counts by reason, findings by study "
                                                      "(reason, after), downloads through /api/reconciliations"),
    ("GET", "/ui/events", "query", "event reports owed and undeliverable, per subscriber"),
    ("POST", "/ui/events/retry", "admin", "a subscriber's undeliverable event reports owed again"),
    ("GET", "/ui/status", "query", "addresses, associations, backlogs, policies, version, database"),
    ("GET", "/ui/static/{file}", "none", "the console's CSS and JavaScript (shipped in the package)"),
)


@dataclass
class ConsoleServices:
    """What the console reads and calls; the composition root builds it from its own objects."""

    settings: Settings
    engine: Engine
    worklist: WorklistService
    readiness: ReadinessService
    outbox: Outbox
    tokens: Tokens
    audit: Any
    studies: StudyChanges  # told of studies a "run now" reconciliation's feedback changed
    policies: Callable[[], Any]  # the policy set in force (it changes on SIGHUP)
    associations: Callable[[], int]
    listening: Callable[[], tuple[int, int]]  # the DICOM and HTTP ports bound (0 in the settings: any free one)
    backlogs: Callable[[], dict[str, int]]


class PageRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def may(right: Right) -> Callable:
    """A page dependency: the API's access check (token from the header or the session cookie, the same
    audit records); a refusal becomes a page (401: the login page; 403: why) rather than JSON."""
    check = requires(right)

    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        try:
            return await check(request, credentials)
        except HTTPException as exc:
            raise PageRefused(exc.status_code, str(exc.detail)) from None
    return dependency


# --- formatting for templates ------------------------------------------------------------------------------

def when(at: datetime | str | None) -> str:
    """A time as the server's local time, minutes (seconds when they matter)."""
    if at is None or at == "":
        return "-"
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if at.tzinfo is not None:
        at = at.astimezone()
    return at.strftime("%Y-%m-%d %H:%M:%S" if at.second else "%Y-%m-%d %H:%M")


def iso(at: datetime | None) -> str:
    return at.isoformat() if at else ""


def install(app: FastAPI, services: ConsoleServices) -> live.LiveFeed:
    """Mount the console on the HTTP face's app: its pages, its static files, its refusal pages."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(when=when, iso=iso, age=views.age_text, colour=charts.colour)
    templates.env.globals.update(version=__version__, urlencode=urlencode)
    feed = live.LiveFeed()
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="console static")
    app.include_router(_router(services, templates, feed))

    @app.exception_handler(PageRefused)
    async def refused(request: Request, exc: PageRefused):
        if exc.status == 401:
            # After signing in, back to the page asked for (a form's POST goes back to the worklist).
            target = (request.url.path + (f"?{request.url.query}" if request.url.query else "")
                      if request.method == "GET" else "/ui/worklist")
            return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)
        return page(templates, request, "error.html", None, status=exc.status, title="Refused",
                    message=exc.reason)
    return feed


def page(templates: Jinja2Templates, request: Request, name: str, who: Principal | None, *, status: int = 200,
         **context: Any) -> Response:
    context.update(who=who, admin=bool(who and who.may(Right.ADMIN)), csrf=session.csrf_token(request),
                   notice=request.query_params.get("notice", ""), problem=request.query_params.get("problem", ""),
                   path=request.url.path)
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                                   "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                                                   "form-action 'self'")
    response.headers["Cache-Control"] = "no-store"
    session.remember(response, request)
    return response


def _back(path: str, **message: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(message)}", status_code=303)


def _router(s: ConsoleServices, templates: Jinja2Templates, feed: live.LiveFeed) -> APIRouter:
    api = APIRouter(tags=["web console"], default_response_class=HTMLResponse)
    read, admin = may(Right.QUERY), may(Right.ADMIN)

    def render(request: Request, name: str, who: Principal | None, **context: Any) -> Response:
        return page(templates, request, name, who, **context)

    async def checked_form(request: Request) -> dict[str, str]:
        """The form's fields (application/x-www-form-urlencoded, as the pages send), once its CSRF
        token and origin are checked; PageRefused 403 otherwise."""
        body = (await request.body())[:65536].decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        problem = session.csrf_problem(request, form.get(session.CSRF_FIELD))
        if problem:
            log.warning(f"console form refused: {problem}", extra={"peer": request.client.host if request.client else None})
            raise PageRefused(403, problem)
        return form

    # --- session ----------------------------------------------------------------------------------------

    @api.get("/", name="console home", summary="The web console opens on the worklist", response_class=Response)
    def home() -> Response:
        return RedirectResponse("/ui/worklist", status_code=303)

    @api.get("/ui/login", name="console login page", summary="The console's login page (a token, entered once)")
    def login_page(request: Request, next: str = "/ui/worklist", failed: str = "") -> Response:
        open_mode = not s.tokens.any_in_force()
        return render(request, "login.html", None, title="Sign in", next=_safe_next(next), failed=failed,
                      open_mode=open_mode)

    @api.post("/ui/login", name="console login", summary="Check a token and keep it in the session cookie",
              response_class=Response)
    async def login(request: Request) -> Response:
        form = await checked_form(request)
        token, next = form.get("token", "").strip(), form.get("next", "/ui/worklist")
        principal = await run_in_threadpool(s.tokens.principal, token) if token else None
        if principal is None:
            log.warning("console sign-in refused: unknown or revoked token",
                        extra={"peer": request.client.host if request.client else None})
            return RedirectResponse("/ui/login?" + urlencode({"next": _safe_next(next), "failed": "1"}),
                                    status_code=303)
        response = RedirectResponse(_safe_next(next), status_code=303)
        session.set_token(response, request, token)
        log.info("console sign-in", extra={"calling_ae": principal.name})
        return response

    @api.post("/ui/logout", name="console logout", summary="Forget the session's token", response_class=Response)
    async def logout(request: Request) -> Response:
        await checked_form(request)
        response = RedirectResponse("/ui/login", status_code=303)
        session.clear_token(response)
        return response

    # --- worklist ---------------------------------------------------------------------------------------

    @api.get("/ui/worklist", name="console worklist",
             summary="Workitems with filters named after the columns, keyset pages, live updates")
    def worklist(request: Request, who: Principal = Depends(read)) -> Response:
        try:
            f = views.WorklistFilter.parse(dict(request.query_params))
        except views.BadFilter as exc:
            return page(templates, request, "error.html", who, status=400, title="Bad filter", message=str(exc))
        found = views.worklist_page(s.engine, f)
        chart = views.state_chart(s.engine)
        return render(request, "worklist.html", who, title="Worklist", f=f, rows=found.rows,
                      next_url=("/ui/worklist?" + urlencode(f.params(after=found.next_after))) if found.next_after else None,
                      first_url=("/ui/worklist?" + urlencode(f.params(after=""))) if f.after else None,
                      states=views.STATES, readiness=views.READINESS, priorities=views.PRIORITIES, sorts=views.SORTS,
                      chart=chart, chart_series=views.CHART_SERIES,
                      chart_svg=charts.stacked_days(chart, views.CHART_SERIES,
                                                    "Workitems per day of scheduled start, by state and readiness"),
                      now=datetime.now(timezone.utc))

    @api.websocket("/ui/live", name="console live updates")
    async def live_updates(socket: WebSocket) -> None:
        await live.serve(socket, feed, s.tokens, s.engine)

    # --- one workitem -----------------------------------------------------------------------------------

    @api.get("/ui/workitems/{uid}", name="console workitem",
             summary="A workitem: attributes, inputs by series with availability, explain, events, actions")
    def workitem(request: Request, uid: str, who: Principal = Depends(read)) -> Response:
        got = s.worklist.get(uid, None)
        if got.dataset is None:
            return page(templates, request, "error.html", who, status=404, title="Unknown workitem",
                        message=f"no workitem {uid}")
        ds = got.dataset
        studies = {st: study_report(s.engine, st) for st in views.input_studies(ds)[:5]}
        state = views.first_value(ds, "00741000")
        return render(request, "workitem.html", who, title=f"Workitem {uid}", uid=uid, state=state,
                      readiness_state=views.first_value(ds, "00404041"), priority=views.first_value(ds, "00741200"),
                      label=views.first_value(ds, "00741204"), tree=views.attribute_tree(ds),
                      inputs=views.input_series(ds, studies), explain=s.readiness.explain(uid, utcnow()),
                      events=views.event_history(s.engine, uid), priorities=views.PRIORITIES,
                      study_uid=views.first_value(ds, "0020000D"))

    @api.post("/ui/workitems/{uid}/cancel", name="console request cancellation", response_class=Response,
              summary="Request the cancellation of a workitem (admin; as N-ACTION 2)")
    async def request_cancel(request: Request, uid: str, who: Principal = Depends(admin)) -> Response:
        reason = (await checked_form(request)).get("reason", "")
        info = {"00741238": {"vr": "LT", "Value": [reason.strip()[:1024]]}} if reason.strip() else {}
        return _outcome(f"/ui/workitems/{uid}", "cancellation requested",
                        await run_in_threadpool(s.worklist.request_cancel, uid, info, who.name[:16]))

    @api.post("/ui/workitems/{uid}/reschedule", name="console reschedule", response_class=Response,
              summary="Move a SCHEDULED workitem's start (admin; as N-SET)")
    async def reschedule(request: Request, uid: str, who: Principal = Depends(admin)) -> Response:
        start = (await checked_form(request)).get("start", "")
        try:
            at = datetime.fromisoformat(start.strip()).astimezone() if start.strip() else None
        except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 pushed past by its offset
            at = None
        if at is None:
            return _back(f"/ui/workitems/{uid}", problem="the new start is not a date and time")
        value = at.strftime("%Y%m%d%H%M%S") + at.strftime("%z")
        return _outcome(f"/ui/workitems/{uid}", f"rescheduled to {when(at)}",
                        await run_in_threadpool(s.worklist.set, uid, {"00404005": {"vr": "DT", "Value": [value]}}))

    @api.post("/ui/workitems/{uid}/priority", name="console change priority", response_class=Response,
              summary="Change a workitem's priority (admin; as N-SET)")
    async def change_priority(request: Request, uid: str, who: Principal = Depends(admin)) -> Response:
        priority = (await checked_form(request)).get("priority", "")
        if priority not in views.PRIORITIES:
            return _back(f"/ui/workitems/{uid}", problem=f"priority is one of {', '.join(views.PRIORITIES)}")
        return _outcome(f"/ui/workitems/{uid}", f"priority now {priority}",
                        await run_in_threadpool(s.worklist.set, uid, {"00741200": {"vr": "CS", "Value": [priority]}}))

    # --- studies ----------------------------------------------------------------------------------------

    @api.get("/ui/studies", name="console study search",
             summary="Find studies by Study UID, Accession Number, or a workitem's Patient ID or name")
    def studies(request: Request, q: str = Query("", max_length=256), who: Principal = Depends(read)) -> Response:
        found = views.find_studies(s.engine, q) if q.strip() else []
        if len(found) == 1 and found[0] == q.strip():
            return RedirectResponse(f"/ui/studies/{found[0]}", status_code=303)
        return render(request, "studies.html", who, title="Studies", q=q, found=found)

    @api.get("/ui/studies/{uid}", name="console study",
             summary="A study: series and instances with availability per location, IANs, steps, workitems")
    def study(request: Request, uid: str, who: Principal = Depends(read)) -> Response:
        report = study_report(s.engine, uid)
        if report is None:
            return page(templates, request, "error.html", who, status=404, title="Unknown study",
                        message=f"nothing is known of study {uid}")
        series = views.study_series(report)
        locations = views.locations_of(report)
        grid_series = [views.StudySeries(x.series_uid, x.instances) for x in series]
        shown, trimmed = 0, []
        for x in grid_series:
            take = x.instances[:max(0, MAX_GRID - shown)]
            shown += len(take)
            trimmed.append(views.StudySeries(x.series_uid, take))
        return render(request, "study.html", who, title=f"Study {uid}", uid=uid, report=report, series=series,
                      locations=locations, counts=views.availability_counts(report),
                      grid=charts.availability_grid(trimmed, locations, "Availability of each instance per location"),
                      grid_trimmed=len(report["instances"]) > MAX_GRID, max_grid=MAX_GRID)

    # --- reconciliations --------------------------------------------------------------------------------

    @api.get("/ui/reconciliations", name="console reconciliations",
             summary="Reconciliation runs with counts by reason, and each archive's schedule")
    def reconciliations(request: Request, who: Principal = Depends(read)) -> Response:
        runs = views.runs(s.engine)
        archives = [r for r in s.settings.remote_ae if r.reconcile is not None]
        last = views.last_runs(s.engine, [a.ae_title for a in archives])
        schedules = []
        for a in archives:
            try:
                upcoming = reconcile_scheduler.next_fire_time(a) if a.reconcile.schedule else None
            except ValueError:
                upcoming = None
            schedules.append({"archive": a.ae_title, "address": f"{a.host}:{a.port}", "method": a.reconcile.method,
                              "schedule": a.reconcile.schedule, "next": upcoming, "last": last.get(a.ae_title)})
        for r in runs:
            r["bar"] = charts.reason_bar(r["by_reason"], f"findings of run {r['run_uid']} by reason", width=160)
        return render(request, "reconciliations.html", who, title="Reconciliations", runs=runs, schedules=schedules)

    @api.get("/ui/reconciliations/{run_uid}", name="console reconciliation",
             summary="A run: counts by reason, its verification, findings grouped by study, downloads")
    def reconciliation(request: Request, run_uid: str, reason: str = Query("", max_length=32),
                       after: int = Query(0, ge=0), who: Principal = Depends(read)) -> Response:
        r = views.run(s.engine, run_uid)
        if r is None:
            return page(templates, request, "error.html", who, status=404, title="Unknown run",
                        message=f"no reconciliation run {run_uid}")
        if reason and reason not in {x.value for x in Reason}:
            return page(templates, request, "error.html", who, status=400, title="Bad filter",
                        message=f"reason: {reason!r} is not one of {', '.join(x.value for x in Reason)}")
        # Verifying re-reads every finding: inline up to VERIFY_INLINE of them, on request (the API) above.
        check = reports.verify(s.engine, r["id"]) if r["findings"] <= VERIFY_INLINE else None
        s.audit.record_now(messages.report_read(requestor.current(), run_uid))  # a report accessed, as the API's
        found = views.findings(s.engine, r["id"], reason, after)
        params = {k: v for k, v in (("reason", reason),) if v}
        return render(request, "reconciliation.html", who, title=f"Reconciliation {run_uid}", run=r, check=check,
                      found=found, reason=reason, reasons=[x.value for x in Reason], meaning=REASON_MEANING,
                      bar=charts.reason_bar(r["by_reason"], "findings by reason"),
                      next_url=(f"/ui/reconciliations/{run_uid}?" + urlencode(dict(params, after=found.next_after)))
                      if found.next_after else None)

    @api.post("/ui/reconciliations/run", name="console run reconciliation now", response_class=Response,
              summary="Start a reconciliation of a configured archive now (admin)")
    async def run_now(request: Request, who: Principal = Depends(admin)) -> Response:
        archive = (await checked_form(request)).get("archive", "").strip()
        remote = s.settings.remote(archive)
        if remote is None or remote.reconcile is None:
            return _back("/ui/reconciliations", problem=f"{archive!r} is not an archive with [remote_ae.reconcile]")
        target = reconcile_job.Target.of(remote)

        def run() -> None:
            try:
                result = reconcile_job.run(s.settings, s.engine, target, studies=s.studies)
                log.info(f"reconciliation of {archive} started from the console: {result.status}",
                         extra={"calling_ae": who.name})
            except reports.RunInProgress:
                log.warning(f"reconciliation of {archive} not started from the console: a run is in progress")
            except Exception:  # noqa: BLE001 - a background run: its failure is logged, the server stays
                log.exception(f"reconciliation of {archive} from the console failed")
        threading.Thread(target=run, name=f"wfm-console-reconcile-{archive}", daemon=True).start()
        return _back("/ui/reconciliations", notice=f"reconciliation of {archive} started; reload to see its run")

    # --- events and status ------------------------------------------------------------------------------

    @api.get("/ui/events", name="console events", summary="Event reports owed and undeliverable, per subscriber")
    def events(request: Request, who: Principal = Depends(read)) -> Response:
        groups = views.events_by_subscriber(s.engine)
        return render(request, "events.html", who, title="Events", groups=groups,
                      total=sum(sum(counts.values()) for _, counts, _ in groups), shown=views.EVENTS_SHOWN)

    @api.post("/ui/events/retry", name="console retry events", response_class=Response,
              summary="Owe a subscriber's undeliverable event reports again (admin)")
    async def retry(request: Request, who: Principal = Depends(admin)) -> Response:
        subscriber = (await checked_form(request)).get("subscriber", "").strip()
        n = await run_in_threadpool(s.outbox.retry_undeliverable, subscriber, utcnow())
        return _back("/ui/events", notice=f"{n} event report(s) for {subscriber} owed again")

    @api.get("/ui/status", name="console status", summary="Addresses, associations, backlogs, policies, version, database")
    def status(request: Request, who: Principal = Depends(read)) -> Response:
        st = s.settings
        policy_set = s.policies()
        dicom_port, http_port = s.listening()
        return render(request, "status.html", who, title="Status",
                      dicom=f"{st.ae_title} at {st.host}:{dicom_port}", http=f"{st.http_address}:{http_port}",
                      associations=s.associations(), backlogs=s.backlogs(),
                      policies=[p.name for p in policy_set.policies], templates_=[t.name for t in policy_set.templates],
                      policy_folder=str(policies_location(st.policies)),
                      database=make_url(st.database_url).render_as_string(hide_password=True),
                      revision=migrate.current_revision(s.engine), open_mode=not s.tokens.any_in_force())

    return api


def _outcome(path: str, done: str, outcome) -> RedirectResponse:
    """The service's answer, as the DICOM face would give its status: a failure refuses, a warning says so."""
    if outcome.status.category == "Failure":
        detail = outcome.comment or outcome.status.meaning
        return _back(path, problem=f"refused ({outcome.status.hex}): {detail}")
    if outcome.status.category == "Warning":
        return _back(path, notice=f"{done}, with a warning ({outcome.status.hex}): {outcome.status.meaning}")
    return _back(path, notice=done)


def _safe_next(target: str) -> str:
    """Only a path of this server (never another site) is a place to go after signing in."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/ui/worklist"
