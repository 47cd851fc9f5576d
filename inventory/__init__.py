"""Inventory loading: native YAML, Ansible YAML and INI, and Ansible host patterns.

Pure data, no connections and no UI: ``load_inventory(path)`` detects the format and
returns an :class:`~inventory.model.Inventory`; ``select(inventory, pattern)`` resolves a
host pattern to hosts in inventory order.
"""

from inventory.loader import load_inventory
from inventory.model import Host, Inventory
from inventory.patterns import select

__all__ = ["Host", "Inventory", "load_inventory", "select"]
