"""Knobs that make the archive misbehave on purpose, for the client's tests.

Holdings faults (lost, removed, moved instances...) live in Holdings; these are service faults.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    """Read by the services at every step, so a test may change them at any time.

    creation_partial_after: Inventory Creation stops after N study records; the nodes are kept with
        Inventory Completion Status PARTIAL and event 11 reports Transaction Status FAILURE.
    creation_fail_after: Inventory Creation fails after N study records: nothing kept, event 13.
    creation_study_delay: seconds spent per study record, so pause/cancel land mid-production.
    """

    creation_partial_after: int | None = None
    creation_fail_after: int | None = None
    creation_study_delay: float = 0.0
    _abort_budget: int | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def abort_after(self, n_responses: int) -> None:
        """Arm a one-shot "going away": after n more responses (C-FIND matches, C-GET/C-MOVE
        sub-operations, Inventory Creation event reports) the archive aborts that association
        instead of sending the next one."""
        with self._lock:
            self._abort_budget = n_responses

    def disarm(self) -> None:
        with self._lock:
            self._abort_budget = None

    @property
    def armed(self) -> bool:
        return self._abort_budget is not None

    def should_abort(self) -> bool:
        """Called before sending each response: True means abort now (and the fault disarms)."""
        with self._lock:
            if self._abort_budget is None:
                return False
            if self._abort_budget <= 0:
                self._abort_budget = None
                return True
            self._abort_budget -= 1
            return False

    def reset(self) -> None:
        self.creation_partial_after = None
        self.creation_fail_after = None
        self.creation_study_delay = 0.0
        self.disarm()
