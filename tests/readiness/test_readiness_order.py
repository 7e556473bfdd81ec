"""Order does not matter: whatever order and however often IANs, the MPPS and the workitem arrive,
the workitem ends with the same Input Information and Input Readiness State (property-based)."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings, strategies as st
from pydicom.uid import generate_uid
from sqlalchemy import select

from testkit.ian import instance_item, make_ian
from testkit.mpps import completed, in_progress
from testkit.ups import workitem
from workflow.app import App
from workflow.ian.rules.notification import parse_ian
from workflow.ian.ingest import Received
from workflow.ups.tables import WorkitemInput
from workflow.ups.tables import Workitem


def run(app: App, ops: list[tuple[str, int]]) -> tuple[str, set[str], set[str]]:
    study = generate_uid()
    series = {generate_uid(): [generate_uid(), generate_uid()] for _ in range(2)}
    names = list(series)
    workitem_uid, mpps_uid = generate_uid(), generate_uid()
    for kind, index in ops:
        if kind == "ian":
            s = names[index % 2]
            ds = make_ian(study, {s: [instance_item(sop) for sop in series[s]]}).to_json_dict()
            received = Received(generate_uid(), "ARCHIVE", "127.0.0.1:1", datetime.now(timezone.utc), ds)
            app.ingest.ingest(received, parse_ian(ds, 1000))
        elif kind == "mpps":
            app.performed_steps.create(mpps_uid, in_progress(study).to_json_dict(), "CT1")
            app.performed_steps.set(mpps_uid, completed(series).to_json_dict())
        elif kind == "evaluate":  # the server's readiness worker passes by at any point
            app.readiness.run_pending(datetime.now(timezone.utc))
        else:
            ds = workitem(StudyInstanceUID=study, InputReadinessState="INCOMPLETE").to_json_dict()
            app.worklist.create(workitem_uid, ds)
    app.readiness.run_pending(datetime.now(timezone.utc))
    with app.engine.connect() as conn:
        state = conn.execute(select(Workitem.input_readiness_state)
                             .where(Workitem.sop_instance_uid == workitem_uid)).scalar_one()
        listed = set(conn.execute(select(WorkitemInput.sop_instance_uid)
                                  .where(WorkitemInput.workitem_uid == workitem_uid)).scalars())
    return state, listed, {sop for sops in series.values() for sop in sops}


events = st.lists(st.sampled_from([("ian", 0), ("ian", 1)]), min_size=2, max_size=6).filter(
    lambda ops: {i for _, i in ops} == {0, 1})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ians=events, mpps_at=st.integers(0, 6), workitem_at=st.integers(0, 7), mpps_twice=st.booleans(),
       evaluate_at=st.lists(st.integers(0, 9), max_size=3))
def test_any_order_gives_the_same_result(services, ians, mpps_at, workitem_at, mpps_twice, evaluate_at):
    ops = list(ians)
    ops.insert(min(mpps_at, len(ops)), ("mpps", 0))
    if mpps_twice:  # a repeated MPPS is refused (0111/0110) and changes nothing
        ops.insert(min(mpps_at + 1, len(ops)), ("mpps", 0))
    ops.insert(min(workitem_at, len(ops)), ("workitem", 0))
    for at in evaluate_at:
        ops.insert(min(at, len(ops)), ("evaluate", 0))
    state, listed, expected = run(services, ops)
    assert (state, listed) == ("READY", expected)


def test_a_burst_is_evaluated_when_quiet_or_after_the_longest_wait(services):
    """The worker's debounce: a study marked a moment ago is not due until it has been quiet for
    `quiet` seconds, unless it has been waiting `max_wait` seconds while marks kept coming."""
    app, study, series = services, generate_uid(), generate_uid()
    workitem_uid = generate_uid()
    app.worklist.create(workitem_uid, workitem(StudyInstanceUID=study, InputReadinessState="INCOMPLETE").to_json_dict())

    def ian_at(at: datetime) -> None:
        ds = make_ian(study, {series: [instance_item(generate_uid())]}).to_json_dict()
        app.ingest.ingest(Received(generate_uid(), "ARCHIVE", "127.0.0.1:1", at, ds), parse_ian(ds, 1000))

    def listed() -> int:
        with app.engine.connect() as conn:
            return len(conn.execute(select(WorkitemInput.sop_instance_uid)
                                    .where(WorkitemInput.workitem_uid == workitem_uid)).all())

    from datetime import timedelta
    t0 = datetime.now(timezone.utc)
    ian_at(t0)
    app.readiness.run_pending(t0 + timedelta(seconds=0.5), quiet=1.0, max_wait=3.0)
    assert listed() == 0 and app.readiness.next_due == t0 + timedelta(seconds=1.0)  # not quiet yet
    for second in (1, 2):  # a mark every 0.9 s: never quiet for 1 s
        ian_at(t0 + timedelta(seconds=second * 0.9))
        app.readiness.run_pending(t0 + timedelta(seconds=second * 0.9 + 0.5), quiet=1.0, max_wait=3.0)
        assert listed() == 0
    ian_at(t0 + timedelta(seconds=2.7))
    app.readiness.run_pending(t0 + timedelta(seconds=3.5), quiet=1.0, max_wait=3.0)  # waited 3 s since 0.5
    assert listed() == 4 and app.readiness.pending() == 0
    ian_at(t0 + timedelta(seconds=4))
    app.readiness.run_pending(t0 + timedelta(seconds=5.01), quiet=1.0, max_wait=3.0)  # quiet again
    assert listed() == 5
