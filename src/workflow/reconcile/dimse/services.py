"""The SOP classes reconciliation uses as an SCU (`wfm reconcile run` and scheduled runs): for the
conformance statement and the AE's routes."""

from __future__ import annotations

from workflow.dimse.routing import ServiceSpec
from workflow.reconcile.dimse.sop_classes import (INVENTORY_CREATION, INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE,
                                                  REPOSITORY_QUERY, STUDY_ROOT_FIND)

CLIENT_SERVICES = (
    # An archive's holdings, study by study (query path) ...
    ServiceSpec("Study Root Query/Retrieve Information Model - FIND", STUDY_ROOT_FIND, "SCU", "C-FIND"),
    ServiceSpec("Repository Query", REPOSITORY_QUERY, "SCU",
                "C-FIND (Record Key continuation, Maximum Number of Records)"),
    # ... or as one Inventory (Inventory path, Sup 223).
    ServiceSpec("Inventory Query/Retrieve Information Model - FIND", INVENTORY_FIND, "SCU", "C-FIND"),
    ServiceSpec("Inventory Query/Retrieve Information Model - GET", INVENTORY_GET, "SCU",
                "C-GET (with Inventory Storage in the SCP role)"),
    ServiceSpec("Inventory Query/Retrieve Information Model - MOVE", INVENTORY_MOVE, "SCU",
                "C-MOVE (to this AE's Inventory Storage SCP)"),
    ServiceSpec("Inventory Creation", INVENTORY_CREATION, "SCU",
                "N-ACTION (types 11 and 12); receives N-EVENT-REPORT 11, 12, 13"),
)
