"""``load_inventory``: read a file, detect its format, and parse it.

Detection, in order: the extension (``.yaml``/``.yml``/``.json`` are YAML, ``.ini``
and ``.cfg`` are INI); then the first meaningful line: ``[section]`` means INI, and
``---``, ``%YAML`` or a ``name:`` / ``name: {`` key means YAML; anything else (a bare
host list) is INI. A YAML document whose top level has ``defaults``, ``groups`` or
``hosts`` is the native format, any other mapping is an Ansible YAML inventory.

Whatever the input, the only exception that leaves :func:`load_inventory` is
:class:`~console.core.errors.InputError`, with the file, line and field when known.
"""

from __future__ import annotations

import os
import re

from console.core.errors import InputError
from console.core.yamlnodes import is_null
from inventory.ansible_yaml import parse_ansible_yaml
from inventory.ini import parse_ini
from inventory.model import Inventory
from inventory.native import is_native, parse_native
from inventory.yamlnodes import InventoryDoc

YAML_SUFFIXES = (".yaml", ".yml", ".json")
INI_SUFFIXES = (".ini", ".cfg")
# Inventories are text written by people; anything larger is a mistake (or an attack).
MAX_BYTES = 64 * 1024 * 1024

_YAML_KEY = re.compile(r"^[^\s=\[#;][^=]*:\s*(?:[{#].*)?$")


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    file = os.fspath(path)
    text = _read(file)
    try:
        inventory = _parse(text, file)
    except RecursionError:
        raise InputError("inventory nested too deep", file=file) from None
    except MemoryError:
        raise InputError("inventory too large to load", file=file) from None
    if not inventory.hosts:
        raise InputError("the inventory defines no hosts", file=file)
    return inventory


def detect_format(text: str, file: str) -> str:
    """``"yaml"`` or ``"ini"`` (see the module docstring)."""
    suffix = os.path.splitext(file)[1].lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in INI_SUFFIXES:
        return "ini"
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            return "ini"
        if line.startswith(("---", "%YAML", "{")) or _YAML_KEY.match(raw.rstrip()):
            return "yaml"
        return "ini"
    return "ini"


def _read(file: str) -> str:
    try:
        with open(file, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except IsADirectoryError:
        raise InputError("is a directory, not an inventory file", file=file) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    if len(data) > MAX_BYTES:
        raise InputError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB", file=file)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError("not valid UTF-8 text", file=file, line=line) from None
    if not text.strip():
        raise InputError("the inventory file is empty", file=file)
    return text


def _parse(text: str, file: str) -> Inventory:
    if detect_format(text, file) == "ini":
        return parse_ini(text, file)
    doc = InventoryDoc(text, file)
    root = doc.root
    if root is None or is_null(root):  # None narrows the type for mypy
        raise InputError("the inventory file is empty (only comments)", file=file)
    if is_native(doc, root):
        return parse_native(root, doc)
    return parse_ansible_yaml(root, doc)
