"""Opening an association as an SCU (the `wfm` send tools): one place that says precisely why an
association did not come up, as an operator needs to read it: nothing listening at the address, the
peer rejecting us (and its reason), the peer accepting none of the proposed SOP classes, or an abort."""

from __future__ import annotations

from pynetdicom import evt
from pynetdicom.association import Association

from workflow.dimse.nodelay import NoDelayAE


class AssociationFailed(ConnectionError):
    """The association did not come up; the message says why."""


def associate(ae: NoDelayAE, host: str, port: int, called_ae: str) -> Association:
    """An established association to `called_ae` at host:port, or AssociationFailed saying why."""
    seen: dict[str, object] = {}

    def on_acse(event) -> None:  # the A-ASSOCIATE response, for its result, source and reason
        seen["response"] = event.primitive

    handlers = [(evt.EVT_CONN_OPEN, lambda event: seen.setdefault("open", True)),
                (evt.EVT_ACCEPTED, lambda event: seen.setdefault("accepted", True)),
                (evt.EVT_ACSE_RECV, on_acse)]
    try:
        assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=handlers)
    except OSError as exc:
        raise AssociationFailed(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
    if assoc.is_established:
        return assoc
    where = f"{called_ae} at {host}:{port}"
    if "open" not in seen:
        raise AssociationFailed(f"connection refused: nothing accepts connections at {host}:{port} "
                                "(is the server running, and is that its port?)")
    if assoc.is_rejected:
        rsp = seen.get("response")
        reason = getattr(rsp, "reason_str", None) or "no reason given"
        raise AssociationFailed(f"association rejected by {where}: {reason}")
    if "accepted" in seen:
        raise AssociationFailed(f"{where} accepted none of the proposed SOP classes")
    raise AssociationFailed(f"association with {where} aborted before it was established")
