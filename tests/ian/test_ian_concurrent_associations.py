"""IANs for one study from several associations at once, naming the same instances in different
orders (on PostgreSQL each IAN is one statement, its study's mark in it): every IAN is acknowledged
and stored once, no transaction waits for another in a circle, and the study is evaluated."""

from __future__ import annotations

import random
import threading
import time

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from testkit.ian import association, instance_item, make_ian, send
from workflow.ian.tables import Instance, InstanceLocation, Notification
from workflow.readiness import procedures

pytestmark = pytest.mark.slow

SENDERS, EACH, POOL = 4, 25, 30


def test_ians_for_one_study_from_several_associations_at_once(server):
    study, series = generate_uid(), generate_uid()
    pool = [generate_uid() for _ in range(POOL)]
    rng = random.Random(16)
    plans = [[[(uid, rng.choice(("PACS", "VNA"))) for uid in rng.sample(pool, 10)] for _ in range(EACH)]
             for _ in range(SENDERS)]
    statuses: list[int] = []
    start = threading.Barrier(SENDERS)

    def sender(plan) -> None:
        with association(server.dicom.port) as assoc:
            start.wait()
            for items in plan:
                ian = make_ian(study, {series: [instance_item(uid, ae=(title,)) for uid, title in items]})
                status, _ = send(assoc, ian)
                statuses.append(status.Status if status else -1)

    threads = [threading.Thread(target=sender, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [0x0000] * (SENDERS * EACH)

    named = {pair for plan in plans for items in plan for pair in items}
    with server.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Notification)
                            .where(Notification.study_instance_uid == study)).scalar_one() == SENDERS * EACH
        assert set(conn.execute(select(Instance.sop_instance_uid).where(Instance.study_instance_uid == study))
                   .scalars()) == {uid for uid, _ in named}
        stored = conn.execute(select(Instance.sop_instance_uid, InstanceLocation.retrieve_ae_title)
                              .join(InstanceLocation, InstanceLocation.instance_id == Instance.id)
                              .where(Instance.study_instance_uid == study)).all()
    assert sorted(stored) == sorted(named)  # each location once

    def evaluated() -> bool:  # the study's requested procedure, which its first pass announces, and no mark left
        with server.engine.connect() as conn:
            return bool(procedures.of_study(conn, study)) and not server.readiness.pending()

    deadline = time.monotonic() + 30
    while not evaluated() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert evaluated()
