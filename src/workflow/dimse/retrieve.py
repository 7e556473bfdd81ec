"""C-GET and C-MOVE routed by SOP class, like C-FIND: the handlers of the features' routes, bound on
the running server, with the SCP role accepted for the storage SOP classes a C-GET sends back.

A seam kept apart from dimse/server.py while that module is being changed: `bind_retrieve` belongs in
`DicomServer.start` (two more entries of its handler list, the roles in `build_ae`); it then goes.
"""

from __future__ import annotations

from pynetdicom import evt

from workflow.dimse.datasets import status_dataset
from workflow.kernel import statuses
from workflow.kernel.requestor import Requestor, acting_for

SOP_CLASS_NOT_SUPPORTED = statuses.Status(0x0122, "Failure", "SOP Class not supported")


def accept_get_roles(server) -> None:
    """Before `start`: a C-GET requestor proposes each storage class in the SCP role; accept it."""
    for uid in server.routes.get_storage:
        cx = next((c for c in server.ae.supported_contexts if str(c.abstract_syntax) == uid), None)
        syntaxes = list(cx.transfer_syntax) if cx is not None else None
        if cx is not None:
            server.ae.remove_supported_context(uid)
        server.ae.add_supported_context(uid, syntaxes or ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"],
                                        scu_role=True, scp_role=True)


def bind_retrieve(server) -> None:
    """After `start`: C-GET and C-MOVE requests go to the route of their abstract syntax."""
    if not (server.routes.c_get or server.routes.c_move):
        return

    def route(handlers, refusal):
        def handle(event):
            requestor = event.assoc.requestor
            with server.in_flight.handler(), acting_for(Requestor(requestor.ae_title, str(requestor.address),
                                                                  "dimse")):
                handler = handlers.get(str(event.context.abstract_syntax))
                if handler is None:
                    yield from refusal
                    return
                yield from handler(event)
        return handle

    # Unrouted: C-GET says no sub-operations, then 0122; C-MOVE's first answer is its destination,
    # and "none" is answered A801 by pynetdicom.
    server._server.bind(evt.EVT_C_GET, route(server.routes.c_get, (0, (status_dataset(SOP_CLASS_NOT_SUPPORTED), None))))
    server._server.bind(evt.EVT_C_MOVE, route(server.routes.c_move, ((None, None),)))
