"""Scheduled reconciliation (workflow/jobs.py) over real associations: a firing reconciles the reference
archive through Study Root C-FIND; two schedulers sharing one database run a firing once; runs whose
process died are ended as abandoned; a shutdown records a run it cannot wait for as interrupted; the
jobs follow the configuration; `wfm reconcile schedule`; a bad cron stops `wfm serve` at start-up.

Firings are triggered with the scheduler's own `modify_job(next_run_time=now)`, never by waiting for
the clock. The tests that count runs use a yearly cron, so no natural firing can join in mid-test.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT_FIND
from sqlalchemy import select, update

from testkit.db import test_settings
from testkit.ian import association, instance_item, make_ian, send
from workflow.reconcile import scheduler as jobs
from workflow.app import App
from workflow.config import ConfigError, Reconcile, RemoteAE, load_settings
from workflow.reconcile.rules.compare import Discrepancy, Reason, Tally
from workflow.reconcile import reports
from workflow.reconcile.tables import COMPLETED, FAILED, RUNNING, DiscrepancyRow, ReconciliationRun
from workflow.reconcile.schedule_tables import ReconciliationClaim

pytestmark = pytest.mark.slow

EVERY_MINUTE = "* * * * *"
YEARLY = "0 4 1 1 *"  # 04:00 on 1 January: never fires by itself during a test
RUN, CLAIM, FINDING = ReconciliationRun.__table__, ReconciliationClaim.__table__, DiscrepancyRow.__table__


# --- fixtures and helpers -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(make_archive):
    """The reference archive: three studies of two CT instances, Retrieve AE Title REFARCH."""
    arch = make_archive()
    arch.seeded = arch.holdings.seed(studies=3, series_per_study=1, instances_per_series=2)
    return arch


def settings_for(database_url, port: int, ae: str = "REFARCH", schedule: str = YEARLY, **overrides):
    remote = RemoteAE(ae, "127.0.0.1", port, reconcile=Reconcile(method="query", schedule=schedule))
    return test_settings(database_url, remote_ae=(remote,), **overrides)


@contextmanager
def running(*apps: App):
    for app in apps:
        app.start()
    try:
        yield apps
    finally:
        for app in apps:
            app.stop()


def wait_for(condition, timeout: float = 20.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def fire_now(app: App, ae: str) -> datetime:
    """Make the archive's job due now, through the scheduler (as an operator's 'run it now' would)."""
    at = datetime.now(timezone.utc)
    app.scheduler.scheduler.modify_job(jobs.job_id(ae), next_run_time=at)
    return at


def claims(engine, ae: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(CLAIM).where(CLAIM.c.archive_ae_title == ae)).all()


def claim_done(engine, ae: str, at: datetime):
    return next((c for c in claims(engine, ae) if c.scheduled_fire_time == at and c.run_uid), None)


def runs(engine, ae: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(RUN).where(RUN.c.archive_ae_title == ae).order_by(RUN.c.id)).all()


def run_by_uid(engine, run_uid: str):
    with engine.connect() as conn:
        return conn.execute(select(RUN).where(RUN.c.run_uid == run_uid)).one()


def findings(engine, run_id: int) -> set[tuple[str, str | None]]:
    with engine.connect() as conn:
        return {(r.reason, r.sop_instance_uid) for r in
                conn.execute(select(FINDING.c.reason, FINDING.c.sop_instance_uid).where(FINDING.c.run_id == run_id))}


def stale_run(engine, ae: str, *, findings_: int = 0, silent_for: timedelta = timedelta(hours=1)) -> tuple[int, str]:
    """A RUNNING run whose process died `silent_for` ago, with some findings recorded."""
    then = datetime.now(timezone.utc) - silent_for
    with engine.begin() as conn:
        run_id, run_uid = reports.start_run(conn, archive_ae_title=ae, archive_host="127.0.0.1", archive_port=104,
                                            method="query", scope={}, cutoff=then, started_at=then)
        reports.record_findings(conn, run_id, [
            Discrepancy(Reason.MISSING_IN_ARCHIVE, "1.2.3", "1.2.3.1", f"1.2.3.1.{n}", "lost")
            for n in range(findings_)])
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(heartbeat_at=then))
    return run_id, run_uid


# --- a scheduled run -----------------------------------------------------------------------------------

def test_a_scheduled_firing_reconciles_the_archive(database_url, engine, archive):
    """Every minute by cron, fired now: a query-method run over real associations to the reference
    archive, claimed, its findings right; a run left RUNNING by a dead process is ended first."""
    seeded = archive.seeded
    settings = settings_for(database_url, archive.port, schedule=EVERY_MINUTE)
    # Not within 3 s of a minute: the cron's own firing must not come before the one made here.
    wait_for(lambda: datetime.now().second < 57, timeout=5)
    with running(App(settings)) as (app,):
        # Study 0 announced with one instance the archive never got; studies 1 and 2 never announced.
        never_stored = "1.2.826.0.1.3680043.99.1"
        series = {seeded.series_uid(0): [instance_item(seeded.instance_uid(0, 0, i), ae=("REFARCH",))
                                         for i in range(2)] + [instance_item(never_stored, ae=("REFARCH",))]}
        with association(app.dicom.port, calling_ae="REFARCH") as assoc:
            assert send(assoc, make_ian(seeded.study_uid(0), series))[0].Status == 0
        # After start (which ends stale runs too): only the firing's own recovery can free the archive.
        dead_id, dead_uid = stale_run(engine, "REFARCH", findings_=1)

        at = fire_now(app, "REFARCH")
        claim = wait_for(lambda: claim_done(engine, "REFARCH", at))
        assert claim.claimed_by == f"{socket.gethostname()}:{os.getpid()}"
        run = run_by_uid(engine, claim.run_uid)
        assert (run.status, run.method, run.archive_port) == (COMPLETED, "repository", archive.port)
        unexpected = {(Reason.UNEXPECTED_IN_ARCHIVE.value, seeded.instance_uid(k, 0, i)) for k in (1, 2) for i in (0, 1)}
        assert findings(engine, run.id) == {(Reason.MISSING_IN_ARCHIVE.value, never_stored)} | unexpected
        assert reports.verify(engine, run.id).ok

        dead = run_by_uid(engine, dead_uid)
        assert dead.status == FAILED and dead.error.startswith("abandoned: no progress since ")
        # The job moved on to the cron's next minute, in the shared job store.
        nxt = app.scheduler.scheduler.get_job(jobs.job_id("REFARCH")).next_run_time
        assert nxt > at and (nxt.second, nxt.microsecond) == (0, 0)


def test_two_schedulers_on_one_database_run_a_firing_once(database_url, engine, archive, monkeypatch, caplog):
    """Two Apps (two schedulers) share the job store. Each is held after reading the due job until the
    other has read it too, so both take the same firing, as two processes waking together do: the
    claim lets exactly one of them run it."""
    caplog.set_level(logging.INFO, logger="workflow.reconcile.scheduler")
    settings = settings_for(database_url, archive.port, ae="REFTWO")
    jid = jobs.job_id("REFTWO")
    both_saw_it = threading.Barrier(2, timeout=10)
    with running(App(settings), App(settings)) as apps:
        for app in apps:
            hold_when_due(app.scheduler.jobstore, jid, both_saw_it, monkeypatch)
        at = fire_now(apps[0], "REFTWO")
        apps[1].scheduler.scheduler.wakeup()
        claim = wait_for(lambda: claim_done(engine, "REFTWO", at))
        for app in apps:  # both firings have ended (the loser's at once)
            assert app.scheduler.executor.wait(time.monotonic() + 20) == []
    assert not both_saw_it.broken
    assert [r.run_uid for r in runs(engine, "REFTWO")] == [claim.run_uid]
    assert [c.scheduled_fire_time for c in claims(engine, "REFTWO")] == [at]
    skipped = [r for r in caplog.records if "REFTWO" in r.getMessage() and "another process claimed it" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in caplog.records]


def hold_when_due(store, jid: str, barrier: threading.Barrier, monkeypatch) -> None:
    read = store.get_due_jobs
    held = []

    def get_due_jobs(now):
        due = read(now)
        if not held and any(job.id == jid for job in due):
            held.append(True)
            barrier.wait()  # before this scheduler writes the job's next run time
        return due

    monkeypatch.setattr(store, "get_due_jobs", get_due_jobs)


# --- stale runs and shutdown -------------------------------------------------------------------------

def test_serve_start_ends_runs_whose_process_died(database_url, engine):
    gone_id, gone_uid = stale_run(engine, "GONE", findings_=2)
    with engine.begin() as conn:
        busy_id, busy_uid = reports.start_run(conn, archive_ae_title="BUSY", archive_host="h", archive_port=104,
                                              method="query", scope={}, cutoff=datetime.now(timezone.utc))
    with running(App(test_settings(database_url))) as (app,):
        assert app.scheduler is None  # no archive has a schedule: no scheduler at all
    gone = run_by_uid(engine, gone_uid)
    assert gone.status == FAILED and gone.ended_at is not None
    assert gone.error.startswith("abandoned: no progress since ")
    assert json.loads(gone.counts)["by_reason"][Reason.MISSING_IN_ARCHIVE.value] == 2  # as recorded so far
    assert reports.verify(engine, gone_id).ok
    assert run_by_uid(engine, busy_uid).status == RUNNING  # it beat recently: alive elsewhere

    # The process was only slow, not dead: whatever it still tries to record is refused whole.
    with pytest.raises(reports.RunEnded):
        with engine.begin() as conn:
            reports.record_findings(conn, gone_id, [Discrepancy(Reason.ARCHIVE_ERROR, "1.2.4", None, None, "late")],
                                    start_seq=3)
    with pytest.raises(reports.RunEnded):
        with engine.begin() as conn:
            reports.finish_run(conn, gone_id, Tally(), status=FAILED, error="late")
    assert len(findings(engine, gone_id)) == 2 and reports.verify(engine, gone_id).ok
    with engine.begin() as conn:
        reports.finish_run(conn, busy_id, Tally(), status=FAILED, error="test over")


@contextmanager
def stalling_archive():
    """A Study Root FIND SCP that holds every query until released."""
    asked, release = threading.Event(), threading.Event()

    def on_find(event):
        asked.set()
        release.wait(30)
        yield from ()

    ae = AE(ae_title="SLOW")
    ae.add_supported_context(STUDY_ROOT_FIND)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        yield server.server_address[1], asked, release
    finally:
        release.set()
        server.shutdown()


def test_shutdown_records_a_run_it_cannot_wait_for_as_interrupted(database_url, engine):
    with stalling_archive() as (port, asked, release):
        app = App(settings_for(database_url, port, ae="SLOW", shutdown_grace=0.3))
        app.start()
        fire_now(app, "SLOW")
        assert asked.wait(20)
        run = wait_for(lambda: next(iter(runs(engine, "SLOW")), None))
        app.stop()  # the archive still holds the query: the grace runs out
        stopped = run_by_uid(engine, run.run_uid)
        assert (stopped.status, stopped.error) == (FAILED, jobs.INTERRUPTED)
        assert reports.verify(engine, run.id).ok
        release.set()  # the firing's thread goes on, finds its run ended, and records nothing more
        assert app.scheduler.executor.wait(time.monotonic() + 20) == []
    after = run_by_uid(engine, run.run_uid)
    assert (after.status, after.error, after.report_sha256) == (FAILED, jobs.INTERRUPTED, stopped.report_sha256)


# --- the jobs follow the configuration -----------------------------------------------------------------

def test_jobs_follow_the_configuration(database_url, engine):
    def scheduler(*remotes: tuple[str, str]):
        remote_ae = tuple(RemoteAE(ae, "127.0.0.1", 104, reconcile=Reconcile(method="query", schedule=cron))
                          for ae, cron in remotes)
        s = jobs.ReconcileScheduler(test_settings(database_url, remote_ae=remote_ae), engine)
        s.start()
        return s

    first = scheduler(("KEEP", YEARLY), ("OLD", "0 5 * * *"))
    assert {j.id for j in first.scheduler.get_jobs()} == {"reconcile:KEEP", "reconcile:OLD"}
    owed = datetime.now(timezone.utc) + timedelta(days=3, minutes=7)  # e.g. a firing still owed
    first.scheduler.modify_job("reconcile:KEEP", next_run_time=owed)
    first.stop(grace=1)

    second = scheduler(("KEEP", YEARLY), ("NEW", "*/5 * * * *"))
    jobs_now = {j.id: j for j in second.scheduler.get_jobs()}
    assert set(jobs_now) == {"reconcile:KEEP", "reconcile:NEW"}  # OLD removed, ids stable
    assert jobs_now["reconcile:KEEP"].next_run_time == owed  # same cron: its stored time is kept
    assert jobs_now["reconcile:KEEP"].misfire_grace_time == 3600 and jobs_now["reconcile:KEEP"].coalesce
    second.stop(grace=1)

    third = scheduler(("KEEP", "0 6 1 1 *"))
    keep = third.scheduler.get_job("reconcile:KEEP")
    assert keep.next_run_time.hour == 6 and (keep.next_run_time.month, keep.next_run_time.day) == (1, 1)
    assert [j.id for j in third.scheduler.get_jobs()] == ["reconcile:KEEP"]
    third.stop(grace=1)


# --- the command line ----------------------------------------------------------------------------------

def wfm(*args: str, config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflow", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


SCHEDULE_TOML = """
database_url = "{url}"

[[remote_ae]]
ae_title = "SCHEDPACS"
host = "127.0.0.1"
port = 11199
[remote_ae.reconcile]
method = "query"
schedule = "30 2 * * *"
days = 7
modalities = ["CT", "MR"]

[[remote_ae]]
ae_title = "MANUALPACS"
host = "127.0.0.1"
port = 11198
[remote_ae.reconcile]

[[remote_ae]]
ae_title = "SUBSCRIBER"
host = "127.0.0.1"
port = 11197
"""


def test_reconcile_schedule_lists_archives_next_and_last_runs(database_url, engine, tmp_path):
    config = tmp_path / "wfm.toml"
    config.write_text(SCHEDULE_TOML.format(url=database_url))
    with engine.begin() as conn:
        run_id, run_uid = reports.start_run(conn, archive_ae_title="SCHEDPACS", archive_host="127.0.0.1",
                                            archive_port=11199, method="query", scope={},
                                            cutoff=datetime.now(timezone.utc))
        reports.finish_run(conn, run_id, Tally())
    next_run = jobs.next_fire_time(load_settings(config).remote("SCHEDPACS")).isoformat(timespec="seconds")

    table = wfm("reconcile", "schedule", config=config)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ARCHIVE", "METHOD", "SCHEDULE", "SCOPE", "NEXT", "RUN", "LAST", "RUN", "STATUS", "ENDED"]
    sched = next(line for line in lines if line.startswith("SCHEDPACS"))
    for needle in ("query", "30 2 * * *", "last 7 days CT,MR", next_run, run_uid, COMPLETED):
        assert needle in sched, (needle, sched)
    manual = next(line for line in lines if line.startswith("MANUALPACS"))
    assert manual.split()[:3] == ["MANUALPACS", "auto", "manual"]
    assert not any(line.startswith("SUBSCRIBER") for line in lines)  # not an archive we reconcile

    as_json = json.loads(wfm("reconcile", "schedule", "--json", config=config).stdout)
    assert [r["archive"] for r in as_json] == ["SCHEDPACS", "MANUALPACS"]
    assert as_json[0]["next_run"] == next_run and as_json[0]["last_run"]["run_uid"] == run_uid
    assert as_json[0]["scope"] == {"days": 7, "modalities": ["CT", "MR"]}
    assert as_json[1]["schedule"] == "" and as_json[1]["next_run"] is None and as_json[1]["last_run"] is None


def test_a_bad_cron_stops_serve_at_start_up_naming_file_key_and_reason(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[remote_ae]]\nae_title = "PACS"\nhost = "h"\nport = 104\n'
                      '[remote_ae.reconcile]\nschedule = "61 * * * *"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    served = wfm("serve", config=config)
    assert served.returncode == 2
    for text in (str(err.value), served.stderr):
        assert f"{config}: remote_ae[0].reconcile: key 'schedule': '61 * * * *' is not a valid cron" in text
        assert "61" in text.split("is not a valid cron expression:")[1]  # APScheduler's own reason


@pytest.mark.parametrize("key, value, reason", [
    ("reconcile_stale_after", "30", "at least 60 seconds"),
    ("reconcile_misfire_grace", "0", "must be positive"),
])
def test_scheduling_settings_are_checked(key, value, reason):
    with pytest.raises(ConfigError, match=f"environment variable WFM_{key.upper()}: .*{reason}"):
        load_settings(environ={f"WFM_{key.upper()}": value})
