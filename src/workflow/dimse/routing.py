"""What each feature's DIMSE adapter offers the one Application Entity: the SOP classes (for
negotiation and the conformance statement) and its handlers, by SOP class. pynetdicom has one handler
per event type for the whole AE (IAN, UPS and MPPS share EVT_N_CREATE), so the server routes on the
request's SOP class; the composition root merges the features' routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class ServiceSpec:
    """One SOP class this AE offers or uses: what the conformance statement says about it."""

    name: str
    sop_class_uid: str
    role: str
    dimse: str


@dataclass
class Routes:
    """Handlers by SOP Class UID: N-CREATE by the Affected SOP Class UID, N-SET / N-GET / N-ACTION by the
    Requested SOP Class UID (UPS N-* requests carry the Push UID on any UPS context), C-FIND and C-STORE
    by the negotiated abstract syntax."""

    offers: tuple[ServiceSpec, ...] = ()  # SCP: presentation contexts accepted
    uses: tuple[ServiceSpec, ...] = ()  # SCU: associations this server opens
    n_create: dict[str, Callable] = field(default_factory=dict)
    n_set: dict[str, Callable] = field(default_factory=dict)
    n_get: dict[str, Callable] = field(default_factory=dict)
    n_action: dict[str, Callable] = field(default_factory=dict)
    c_find: dict[str, Callable] = field(default_factory=dict)
    c_store: dict[str, Callable] = field(default_factory=dict)
    # C-GET and C-MOVE by the negotiated abstract syntax.
    c_get: dict[str, Callable] = field(default_factory=dict)
    c_move: dict[str, Callable] = field(default_factory=dict)
    # SOP classes this AE sends as C-STORE sub-operations of a C-GET (their SCP role is accepted).
    get_storage: tuple[str, ...] = ()
    # The other abstract syntaxes whose contexts may carry a request for a SOP class (UPS requests carry
    # the Push UID on any UPS context, PS3.4 CC.3.1.1); any other only on its own class's context.
    carried_on: dict[str, frozenset[str]] = field(default_factory=dict)

    def served_on(self, sop_class: str, abstract_syntax: str) -> bool:
        """Whether a request for `sop_class` may be served on a context for `abstract_syntax`."""
        return abstract_syntax == sop_class or abstract_syntax in self.carried_on.get(sop_class, ())

    @staticmethod
    def merge(*parts: "Routes") -> "Routes":
        out = Routes()
        for part in parts:
            out.offers += part.offers
            out.uses += part.uses
            out.get_storage += part.get_storage
            for uid, syntaxes in part.carried_on.items():
                out.carried_on[uid] = out.carried_on.get(uid, frozenset()) | syntaxes
            for name in ("n_create", "n_set", "n_get", "n_action", "c_find", "c_store", "c_get", "c_move"):
                mine = getattr(out, name)
                for uid, handler in getattr(part, name).items():
                    if uid in mine:
                        raise ValueError(f"two features route {name} for {uid}")
                    mine[uid] = handler
        return out
