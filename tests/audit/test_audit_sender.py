"""The audit sender's bookkeeping when the repository's connection breaks in the middle of a batch:
the records written on it just before stay owed (sent again), the one that failed is owed too."""

from __future__ import annotations

import threading

from sqlalchemy import select

from workflow.audit.rules.messages import application_activity
from workflow.audit.sender import AuditSender, Repository, RepositoryError
from workflow.audit.tables import AuditRecord
from workflow.audit.trail import PENDING, AuditTrail
from workflow.config import Settings
from workflow.store import migrate
from workflow.store.engine import make_engine

A = AuditRecord.__table__


class BreaksAtThird(Repository):
    """A repository whose connection breaks at the third record written (the frames are kept)."""

    def __init__(self) -> None:
        super().__init__("tcp://127.0.0.1:9")
        self.written: list[bytes] = []

    def send(self, frame: bytes) -> None:
        if len(self.written) == 2:
            raise RepositoryError("connection reset")
        self.written.append(frame)

    def broken(self) -> bool:
        return False


def test_records_written_before_a_break_are_owed_again(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wfm.db'}")
    migrate.upgrade(engine)
    trail = AuditTrail(engine, Settings(audit_repository="tcp://127.0.0.1:9"))
    for _ in range(4):
        trail.record_now(application_activity(started=True))
    repository = BreaksAtThird()
    sender = AuditSender(engine, repository, threading.Event())
    try:
        sender.drain()
    except RepositoryError:
        pass
    else:
        raise AssertionError("the break was not reported")
    with engine.connect() as conn:
        rows = conn.execute(select(A.c.id, A.c.status, A.c.attempts).order_by(A.c.id)).all()
    assert len(repository.written) == 2
    assert [r.status for r in rows] == [PENDING] * 4  # the two written just before the break go again
    assert [r.attempts for r in rows][:3] == [1, 1, 1]
    engine.dispose()
