"""APScheduler wiring: the configured archives reconciled on their cron schedules.

- **Job store in the product's database.** APScheduler 3's SQLAlchemyJobStore, on its own engine for
  the same `database_url`, table `wfm_apscheduler_jobs` (created by the migrations, not by APScheduler).
  One job per `[[remote_ae]]` with a `reconcile.schedule`, id `reconcile:<AE title>` (stable, so a
  restart replaces it instead of adding one); jobs of archives no longer configured are removed. A job
  whose cron is unchanged keeps its stored next run time, so a firing missed while no process ran
  still runs at start if within `reconcile_misfire_grace` (coalesced to one run).
- **The job is a module-level function referenced by text** (`workflow.reconcile.scheduler:reconcile_archive`, taking
  the archive AE title), so the stored job holds no settings, engine or connection. They come from the
  process: the App's `ReconcileScheduler` hands its context (settings, engine, this process's name) to
  its executor, `FiringExecutor`, which runs each firing in its own thread and puts the context and
  the firing's scheduled time in that thread (`_current`); the function reads them there. (One process
  may hold several Apps, as the tests do; each scheduler serves its own.)
- **Each firing runs once across processes.** Several `wfm serve` processes on one PostgreSQL share the
  job store, and APScheduler 3 does not coordinate them: two may read the same due job before either
  writes its next run time. So a firing is claimed first: an INSERT into `reconciliation_claim`, unique
  on (archive, scheduled fire time); the process whose INSERT commits runs it, the others log and skip.
  The scheduled fire time is the one APScheduler hands the executor (`run_times`), which it takes from
  the shared job row, so every process names a firing alike, whatever its clock or when it woke up.
  Neither alternative is: a job-submitted event listener runs after the job was handed to the executor
  (and after the row was updated), and recomputing "the last cron time before now" in the job gives a
  different answer for a late firing, a coalesced one, or one set by `modify_job(next_run_time=...)`.
- **Stale runs.** Before each scheduled run (and at `wfm serve` start, `recover_stale_runs`), RUNNING
  runs without a heartbeat for `reconcile_stale_after` seconds are ended FAILED "abandoned".
- **Shutdown.** No new firings; a running reconciliation may finish within `shutdown_grace`; one still
  running then is recorded FAILED "interrupted by shutdown" (counts so far, report hash), and its
  thread stops at its next heartbeat (reports.RunEnded). The run is found as the archive's RUNNING run
  started after the firing began (one RUNNING run per archive): exact once the firing has started its
  run, which for method "query" is at once (for "auto", after the probe association).
- Other processes' changes to the shared job store (a schedule changed by a restart with another
  configuration) are seen within `POLL_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from workflow.kernel.ports import NoStudyChanges, StudyChanges
from workflow.reconcile import job as reconcile_job
from workflow.config import RemoteAE, Settings
from workflow.reconcile import reports
from workflow.store.engine import make_engine
from workflow.reconcile.tables import RUNNING, ReconciliationRun
from workflow.reconcile.schedule_tables import JOBS_TABLE, ReconciliationClaim

log = logging.getLogger("workflow.reconcile.scheduler")

JOB_PREFIX = "reconcile:"
JOB_FUNC = "workflow.reconcile.scheduler:reconcile_archive"
POLL_SECONDS = 60.0
# Claims are kept this long for the record (and never less than twice the misfire grace, so a late
# process still finds the claim of a firing it could take).
CLAIM_KEEP = timedelta(days=30)
INTERRUPTED = "interrupted by shutdown"

_CLAIM = ReconciliationClaim.__table__
_RUN = ReconciliationRun.__table__
_current = threading.local()  # .firing: the Firing this executor thread runs


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def job_id(ae_title: str) -> str:
    return f"{JOB_PREFIX}{ae_title}"


def scheduled_archives(settings: Settings) -> list[RemoteAE]:
    """The archives with a reconciliation schedule; none: the scheduler is not started at all."""
    return [r for r in settings.remote_ae if r.reconcile is not None and r.reconcile.schedule]


def trigger_for(remote: RemoteAE) -> CronTrigger:
    """The cron trigger of an archive's schedule (five fields, server local time)."""
    return CronTrigger.from_crontab(remote.reconcile.schedule)


def next_fire_time(remote: RemoteAE, now: datetime | None = None) -> datetime | None:
    return trigger_for(remote).get_next_fire_time(None, now or datetime.now().astimezone())


@dataclass(frozen=True)
class JobContext:
    """What a firing needs from its process: never pickled into the job store."""

    settings: Settings
    engine: Engine
    claimed_by: str  # host:pid, recorded on the claims this process wins
    studies: StudyChanges = NoStudyChanges()  # told of studies a run's feedback changed


@dataclass(frozen=True)
class Firing:
    context: JobContext
    archive: str
    scheduled_at: datetime  # from the job store row: the same in every process
    started_at: datetime  # when this process began it (its own clock, as its runs' started_at)


# --- the job ------------------------------------------------------------------------------------------

def reconcile_archive(ae_title: str) -> str | None:
    """The scheduled job, stored by reference. Runs only under FiringExecutor, which gives it the
    process's context and the scheduled fire time. Returns the run UID, or None when skipped."""
    firing = getattr(_current, "firing", None)
    if firing is None or firing.archive != ae_title:
        raise RuntimeError(f"{JOB_FUNC} runs under workflow.reconcile.scheduler.FiringExecutor only")
    return run_firing(firing.context, ae_title, firing.scheduled_at)


def run_firing(context: JobContext, ae_title: str, scheduled_at: datetime) -> str | None:
    """Claim the firing; if ours, end stale runs, then reconcile the archive as configured here."""
    extra = {"called_ae": ae_title}
    keep = max(CLAIM_KEEP, timedelta(seconds=2 * context.settings.reconcile_misfire_grace))
    if not claim(context.engine, ae_title, scheduled_at, context.claimed_by, keep=keep):
        log.info(f"scheduled reconciliation of {ae_title} at {scheduled_at.isoformat()} skipped: "
                 f"another process claimed it", extra=extra)
        return None
    recover_stale_runs(context.engine, context.settings)
    remote = context.settings.remote(ae_title)
    if remote is None or remote.reconcile is None or not remote.reconcile.schedule:
        log.warning(f"scheduled reconciliation of {ae_title} skipped: this process has no schedule for it",
                    extra=extra)
        return None
    log.info(f"scheduled reconciliation of {ae_title} (fire time {scheduled_at.isoformat()}) starting",
             extra=extra)
    try:
        result = reconcile_job.run(context.settings, context.engine, reconcile_job.Target.of(remote),
                                   progress=lambda m: log.info(f"reconciliation of {ae_title}: {m}", extra=extra),
                                   studies=context.studies)
    except reports.RunInProgress as exc:
        log.warning(f"scheduled reconciliation of {ae_title} skipped: {exc}", extra=extra)
        return None
    except reports.RunEnded as exc:
        log.warning(f"scheduled reconciliation of {ae_title} stopped: {exc}", extra=extra)
        return None
    _note_run(context.engine, ae_title, scheduled_at, result.run_uid)
    log.info(f"scheduled reconciliation of {ae_title}: run {result.run_uid} {result.status}",
             extra={**extra, "outcome": result.status})
    return result.run_uid


def claim(engine: Engine, ae_title: str, scheduled_at: datetime, claimed_by: str,
          keep: timedelta = CLAIM_KEEP) -> bool:
    """True when this process won the firing (its INSERT committed); False when another did. Claims
    of this archive older than `keep` go in the same transaction."""
    now = utcnow()
    try:
        with engine.begin() as conn:
            conn.execute(insert(_CLAIM).values(archive_ae_title=ae_title, scheduled_fire_time=scheduled_at,
                                               claimed_at=now, claimed_by=claimed_by))
            conn.execute(delete(_CLAIM).where(_CLAIM.c.archive_ae_title == ae_title,
                                              _CLAIM.c.scheduled_fire_time < now - keep))
    except IntegrityError:
        return False
    return True


def _note_run(engine: Engine, ae_title: str, scheduled_at: datetime, run_uid: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(_CLAIM).where(_CLAIM.c.archive_ae_title == ae_title,
                                          _CLAIM.c.scheduled_fire_time == scheduled_at).values(run_uid=run_uid))


def recover_stale_runs(engine: Engine, settings: Settings, now: datetime | None = None) -> list[str]:
    """End RUNNING runs without a heartbeat for `reconcile_stale_after` seconds as FAILED "abandoned"."""
    now = now or utcnow()
    with engine.begin() as conn:
        ended = reports.abandon_stale(conn, now - timedelta(seconds=settings.reconcile_stale_after), now=now)
    for run_uid, ae_title in ended:
        log.warning(f"reconciliation {run_uid} of {ae_title} ended FAILED: abandoned (no progress for "
                    f"{settings.reconcile_stale_after:g} s)", extra={"called_ae": ae_title})
    return [run_uid for run_uid, _ in ended]


def interrupt(engine: Engine, firing: Firing) -> str | None:
    """Record the run a still running firing started as FAILED "interrupted by shutdown"; its thread
    stops at its next heartbeat. Returns the run UID, or None when it has no run (yet, or any more)."""
    with engine.begin() as conn:
        run = conn.execute(select(_RUN.c.id, _RUN.c.run_uid, _RUN.c.counts)
                           .where(_RUN.c.archive_ae_title == firing.archive, _RUN.c.status == RUNNING,
                                  _RUN.c.started_at >= firing.started_at)).one_or_none()
        if run is None:
            return None
        try:
            reports.finish_run(conn, run.id, json.loads(run.counts), status=reports.FAILED, error=INTERRUPTED)
        except reports.RunEnded:
            return None  # it finished meanwhile
    log.warning(f"reconciliation {run.run_uid} of {firing.archive} ended FAILED: {INTERRUPTED}",
                extra={"called_ae": firing.archive})
    return run.run_uid


# --- the executor -------------------------------------------------------------------------------------

class FiringExecutor(BaseExecutor):
    """Runs each firing in its own daemon thread (a reconciliation may take hours: it must not hold
    the interpreter at exit, as a concurrent.futures pool would), with the process's context and the
    scheduled fire time at hand for the job function. Mirrors APScheduler's pool executors otherwise."""

    def __init__(self, context: JobContext) -> None:
        super().__init__()
        self.context = context
        self._active: dict[threading.Thread, Firing | None] = {}
        self._guard = threading.Lock()

    def _do_submit_job(self, job, run_times) -> None:
        thread = threading.Thread(target=self._run, args=(job, run_times), name=f"wfm-{job.id}", daemon=True)
        with self._guard:
            self._active[thread] = None
        thread.start()

    def _run(self, job, run_times) -> None:
        events = []
        try:
            for run_time in run_times:
                firing = Firing(self.context, str(job.args[0]), run_time, utcnow())
                with self._guard:
                    self._active[threading.current_thread()] = firing
                _current.firing = firing
                try:
                    events += run_job(job, job._jobstore_alias, [run_time], self._logger.name)
                finally:
                    _current.firing = None
        except BaseException as exc:  # noqa: BLE001 - as APScheduler's executors report it
            self._run_job_error(job.id, exc, exc.__traceback__)
        else:
            self._run_job_success(job.id, events)
        finally:
            with self._guard:
                self._active.pop(threading.current_thread(), None)

    def wait(self, deadline: float) -> list[Firing]:
        """Wait for the running firings until `deadline` (time.monotonic()); those still running."""
        with self._guard:
            threads = list(self._active)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._guard:
            return [f for t, f in self._active.items() if t.is_alive() and f is not None]


# --- the scheduler ------------------------------------------------------------------------------------

class ReconcileScheduler:
    """The App's scheduler: started only when some archive has a schedule."""

    def __init__(self, settings: Settings, engine: Engine, claimed_by: str | None = None,
                 studies: StudyChanges = NoStudyChanges()) -> None:
        self.settings = settings
        self.context = JobContext(settings, engine, claimed_by or f"{socket.gethostname()}:{os.getpid()}", studies)
        self.executor = FiringExecutor(self.context)
        # Its own engine: APScheduler disposes its job store's engine when it shuts down.
        self.jobstore = SQLAlchemyJobStore(engine=make_engine(settings.database_url), tablename=JOBS_TABLE)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": self.jobstore}, executors={"default": self.executor}, daemon=True,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.misfire_grace})
        self._stopping = threading.Event()

    @property
    def misfire_grace(self) -> int:
        return max(1, round(self.settings.reconcile_misfire_grace))  # APScheduler wants whole seconds

    def start(self) -> None:
        # Paused while the jobs are brought in line with the configuration: nothing fires half-synced.
        self.scheduler.start(paused=True)
        self.sync_jobs()
        self.scheduler.resume()
        threading.Thread(target=self._poll, name="wfm-scheduler-poll", daemon=True).start()

    def sync_jobs(self) -> None:
        wanted = {job_id(r.ae_title): r for r in scheduled_archives(self.settings)}
        for job in self.scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX) and job.id not in wanted:
                self.scheduler.remove_job(job.id)
                log.info(f"reconciliation schedule of {job.id[len(JOB_PREFIX):]} removed: no longer configured",
                         extra={"called_ae": job.id[len(JOB_PREFIX):]})
        for jid, remote in wanted.items():
            job = self._schedule(jid, remote)
            log.info(f"reconciliation of {remote.ae_title} scheduled '{remote.reconcile.schedule}' "
                     f"({remote.reconcile.method}); next at {job.next_run_time.isoformat()}",
                     extra={"called_ae": remote.ae_title})

    def _schedule(self, jid: str, remote: RemoteAE):
        trigger = trigger_for(remote)
        options = dict(name=f"reconcile {remote.ae_title}", args=[remote.ae_title], coalesce=True,
                       max_instances=1, misfire_grace_time=self.misfire_grace)
        existing = self.scheduler.get_job(jid)
        if (existing is not None and existing.next_run_time is not None and existing.func_ref == JOB_FUNC
                and _same_trigger(existing.trigger, trigger)):
            # Same schedule: keep the stored next run time (a firing missed while down is still owed).
            return self.scheduler.modify_job(jid, **options)
        return self.scheduler.add_job(JOB_FUNC, trigger, id=jid, replace_existing=True, **options)

    def _poll(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            self.scheduler.wakeup()

    def shutdown(self) -> None:
        """No new firings; running ones go on (see `finish`)."""
        self._stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def finish(self, deadline: float) -> list[str]:
        """Let running firings finish until `deadline` (time.monotonic()); record the runs of those
        still going as interrupted. Returns their run UIDs."""
        interrupted = [interrupt(self.context.engine, f) for f in self.executor.wait(deadline)]
        return [uid for uid in interrupted if uid]

    def stop(self, grace: float) -> list[str]:
        self.shutdown()
        return self.finish(time.monotonic() + grace)


def _same_trigger(a, b) -> bool:
    return (isinstance(a, CronTrigger) and repr(a) == repr(b) and str(a.timezone) == str(b.timezone)
            and a.jitter == b.jitter)
