"""Splitting an inventory into a tree of Inventory SOP instances (PS3.3 C.38.1.1.5-6): leaves of at
most `record_limit` study records, then index nodes of `fanout` children each up to one root; every
node lists its whole subtree. `put` stores one node and returns its reference, so records stream
through and memory holds one leaf."""

from __future__ import annotations

from typing import Callable, Iterable

from pydicom.dataset import Dataset

from workflow.inventory.rules.iod import NodeRef

Put = Callable[[list[Dataset], list[NodeRef]], NodeRef]


def build_tree(records: Iterable[Dataset], record_limit: int, fanout: int, put: Put) -> NodeRef:
    if record_limit < 1 or fanout < 2:
        raise ValueError("record_limit must be at least 1 and fanout at least 2")
    leaves: list[NodeRef] = []
    current: list[Dataset] = []
    for record in records:
        current.append(record)
        if len(current) >= record_limit:
            leaves.append(put(current, []))
            current = []
    if current or not leaves:  # an empty archive is one empty node
        leaves.append(put(current, []))
    nodes = leaves
    while len(nodes) > 1:
        groups = [nodes[i:i + fanout] for i in range(0, len(nodes), fanout)]
        # A lone last child moves up a level rather than getting an index node of its own.
        nodes = [group[0] if len(group) == 1 else put([], group) for group in groups]
    return nodes[0]
