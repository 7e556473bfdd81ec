"""The SOP classes reconciliation uses as an SCU (`wfm reconcile run` and scheduled runs): for the
conformance statement and the AE's routes."""

from __future__ import annotations

from workflow.dimse.routing import ServiceSpec

CLIENT_SERVICES = (
    # An archive's holdings, study by study (query path) ...
    ServiceSpec("Study Root Query/Retrieve Information Model - FIND", "1.2.840.10008.5.1.4.1.2.2.1", "SCU",
                "C-FIND"),
    ServiceSpec("Repository Query", "1.2.840.10008.5.1.4.1.1.201.6", "SCU",
                "C-FIND (Record Key continuation, Maximum Number of Records)"),
    # ... or as one Inventory (Inventory path, Sup 223).
    ServiceSpec("Inventory Query/Retrieve Information Model - FIND", "1.2.840.10008.5.1.4.1.1.201.2", "SCU",
                "C-FIND"),
    ServiceSpec("Inventory Query/Retrieve Information Model - GET", "1.2.840.10008.5.1.4.1.1.201.4", "SCU",
                "C-GET (with Inventory Storage in the SCP role)"),
    ServiceSpec("Inventory Query/Retrieve Information Model - MOVE", "1.2.840.10008.5.1.4.1.1.201.3", "SCU",
                "C-MOVE (to this AE's Inventory Storage SCP)"),
    ServiceSpec("Inventory Creation", "1.2.840.10008.5.1.4.1.1.201.5", "SCU",
                "N-ACTION (types 11 and 12); receives N-EVENT-REPORT 11, 12, 13"),
)
