"""`wfm reconcile schedule`: each configured archive, how and when it is reconciled, and its last run.

The next run time is computed from the configured cron (server local time), as a running `wfm serve`
schedules it; archives with a `[remote_ae.reconcile]` table but no schedule show "manual".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select


def cmd_reconcile_schedule(args, settings, engine) -> int:
    rows = schedule_rows(settings, engine)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no archive is configured for reconciliation ([remote_ae.reconcile])")
        return 0
    table = [("ARCHIVE", "METHOD", "SCHEDULE", "SCOPE", "NEXT RUN", "LAST RUN", "STATUS", "ENDED")]
    table += [(r["archive"], r["method"], r["schedule"] or "manual", _scope_text(r["scope"]),
               r["next_run"] or "-", r["last_run"]["run_uid"] if r["last_run"] else "-",
               r["last_run"]["status"] if r["last_run"] else "-",
               (r["last_run"]["ended_at"] or "-") if r["last_run"] else "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def schedule_rows(settings, engine, now: datetime | None = None) -> list[dict[str, Any]]:
    from workflow.reconcile.scheduler import next_fire_time

    now = now or datetime.now().astimezone()
    rows = []
    for remote in settings.remote_ae:
        rc = remote.reconcile
        if rc is None:
            continue  # a peer we do not reconcile (an event subscriber)
        next_run = next_fire_time(remote, now) if rc.schedule else None
        rows.append({
            "archive": remote.ae_title, "host": remote.host, "port": remote.port, "method": rc.method,
            "schedule": rc.schedule, "scope": {"days": rc.days, "modalities": list(rc.modalities)},
            "next_run": next_run.isoformat(timespec="seconds") if next_run else None,
            "last_run": _last_run(engine, remote.ae_title),
        })
    return rows


def _last_run(engine, ae_title: str) -> dict[str, Any] | None:
    from workflow.store.engine import reading
    from workflow.reconcile.tables import ReconciliationRun as R

    with reading(engine) as conn:
        run = conn.execute(select(R.run_uid, R.status, R.started_at, R.ended_at)
                           .where(R.archive_ae_title == ae_title)
                           .order_by(R.started_at.desc(), R.id.desc()).limit(1)).one_or_none()
    if run is None:
        return None
    return {"run_uid": run.run_uid, "status": run.status, "started_at": _iso(run.started_at),
            "ended_at": _iso(run.ended_at)}


def _iso(at: datetime | None) -> str | None:
    return at.astimezone().isoformat(timespec="seconds") if at else None


def _scope_text(scope: dict[str, Any]) -> str:
    parts = [f"last {scope['days']} days" if scope["days"] else "all studies"]
    if scope["modalities"]:
        parts.append(",".join(scope["modalities"]))
    return " ".join(parts)
