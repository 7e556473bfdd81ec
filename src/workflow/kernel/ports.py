"""What a feature needs from the rooms above it, as small protocols the composition root (app.py)
fills in. A room that must tell another of a change names the protocol here and takes an object that
implements it in its constructor, so reading the room shows what it tells and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class StudyChanges(Protocol):
    """Told, inside the transaction that changed what is known of a study (an IAN's instances, a
    performed step's final state), that the study must be evaluated again; told after the commit
    so that whoever evaluates wakes up. `ian`: the change is an IAN's, received at `at`, whose rows
    carry its notification (an evaluation may read only those); any other change (the default) makes
    the next evaluation read the whole study."""

    def mark(self, conn: Any, study_uid: str, at: datetime, ian: bool = False) -> None: ...

    def ian_mark_from(self, gate: Any) -> Any | None:
        """An IAN's mark as `mark(..., ian=True)` would write it, as a statement the IAN's own statement
        carries (PostgreSQL: the whole IAN one statement, no transaction block): an INSERT ... SELECT
        from `gate`, a CTE with a row when the IAN was stored and none otherwise, of the study and time
        bound as `study` and `at`. None: the mark cannot be folded so; call `mark`."""
        ...

    def committed(self) -> None: ...


class NoStudyChanges:
    """For a room used on its own (a tool, a test): nobody evaluates studies."""

    def mark(self, conn: Any, study_uid: str, at: datetime, ian: bool = False) -> None:
        pass

    def ian_mark_from(self, gate: Any) -> Any | None:
        return None

    def committed(self) -> None:
        pass


class Signal:
    """Callbacks run after a commit that wrote something for them (events owed to subscribers):
    each face that delivers connects its wake-up."""

    def __init__(self) -> None:
        self._callbacks: list = []

    def connect(self, callback) -> None:
        self._callbacks.append(callback)

    def fire(self) -> None:
        for callback in self._callbacks:
            callback()


class Audit(Protocol):
    """The audit trail (audit/trail.py): a record written in the caller's transaction, or in its own."""

    def record(self, conn: Any, message: Any) -> None: ...

    def committed(self) -> None: ...

    def record_now(self, message: Any) -> None: ...
