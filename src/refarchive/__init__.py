"""A reference DICOM archive for tests and demos: Storage SCP, Study Root C-FIND, Inventory
Creation and Inventory Q/R producing standard Inventory objects (Sup 223), with fault injection.

Kept apart from the product: it never imports `workflow`, and `workflow` never imports it.
"""

from refarchive.archive import ReferenceArchive
from refarchive.faults import Faults
from refarchive.holdings import Holdings, Instance, SeedResult
from refarchive.inventory_build import BuiltInventory
from refarchive.scope import Scope

__all__ = ["BuiltInventory", "Faults", "Holdings", "Instance", "ReferenceArchive", "Scope", "SeedResult"]
