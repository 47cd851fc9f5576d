"""``load_inventory``: read a file, detect its format, and parse it.

Detection, in order: the extension (``.yaml``/``.yml``/``.json`` are YAML, ``.ini``
and ``.cfg`` are INI); then the first meaningful line: ``[section]`` means INI, and
``---``, ``%YAML`` or a ``name:`` / ``name: {`` key means YAML; anything else (a bare
host list) is INI. A YAML document whose top level has ``defaults``, ``groups`` or
``hosts`` is the native format, any other mapping is an Ansible YAML inventory.

An inventory may be a directory, or several sources: as Ansible does, every file of a
directory is read (sorted, recursing into subdirectories; hidden files, ``group_vars``,
``host_vars``, ``vars_plugins`` and names ending in one of :data:`IGNORED_SUFFIXES`
skipped), all into ONE inventory (a host or group named in two files is one host or
group, later files setting its vars last), and then each source's ``group_vars/`` and
``host_vars/`` (beside a file, inside a directory) are applied, in source order
(:mod:`inventory.varsdirs`). rolldeck's native format stands alone: one file, no vars
directories.

Whatever the input, the only exception that leaves :func:`load_inventory` is
:class:`~console.core.errors.InputError`, with the file, line and field when known.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence

from console.core.errors import InputError
from console.core.yamlnodes import is_null
from inventory.ansible_vars import AnsibleHostMaker
from inventory.ansible_yaml import feed_ansible_yaml
from inventory.builder import InventoryBuilder
from inventory.ini import feed_ini
from inventory.model import Inventory
from inventory.native import is_native, parse_native
from inventory.varsdirs import VarsDirs, load_vars_dirs, read_text
from inventory.yamlnodes import InventoryDoc

YAML_SUFFIXES = (".yaml", ".yml", ".json")
INI_SUFFIXES = (".ini", ".cfg")
# Inventories are text written by people; anything larger is a mistake (or an attack).
# 100,000 hosts (the host limit) at 300 bytes each; composing 32 MiB of YAML already
# takes seconds and a few hundred MB, so more would only be a slower way to fail.
MAX_BYTES = 32 * 1024 * 1024

_YAML_KEY = re.compile(r"^[^\s=\[#;][^=]*:\s*(?:[{#].*)?$")

# Ansible's defaults: IGNORED_ALWAYS names, and INVENTORY_IGNORE_EXTS (REJECT_EXTS plus
# .orig, .cfg, .retry), matched at the end of the name.
IGNORED_NAMES = frozenset({"group_vars", "host_vars", "vars_plugins"})
IGNORED_SUFFIXES = (
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg",
    ".retry",
)  # fmt: skip
MAX_FILES = 10_000  # inventory files in one directory tree

Source = str | os.PathLike[str]


def load_inventory(path: Source | Sequence[Source], *, limit: int | None = None) -> Inventory:
    """One inventory from a file, a directory, or several of them (merged in order).

    A string naming no file but joining existing ones with ``os.pathsep`` (what a
    journal records for several inventories) is read as those. ``limit``: the most
    hosts allowed (default: ``$ROLLDECK_MAX_HOSTS`` or 100,000).
    """
    sources = split_sources(path)
    first = sources[0]
    try:
        parsed: dict[str, InventoryDoc] = {}
        if len(sources) == 1 and not os.path.isdir(first):
            text = _read(first)
            if detect_format(text, first) == "yaml":
                doc = parsed[first] = InventoryDoc(text, first)
                if doc.root is not None and is_native(doc, doc.root):
                    inventory = parse_native(doc.root, doc)
                    inventory.files = (first,)
                    inventory.notes = _native_notes(first)
                    _check_size(inventory, first, limit)
                    return _non_empty(inventory, first)
        inventory = _load_ansible(sources, limit, parsed)
    except RecursionError:
        raise InputError("inventory nested too deep", file=first) from None
    except MemoryError:
        raise InputError("inventory too large to load", file=first) from None
    return _non_empty(inventory, inventory.path)


def split_sources(path: Source | Sequence[Source]) -> list[str]:
    """The inventory sources ``path`` stands for (see :func:`load_inventory`)."""
    if isinstance(path, str | os.PathLike):
        text = os.fspath(path)
        parts = text.split(os.pathsep)
        if len(parts) > 1 and not os.path.exists(text) and all(map(os.path.exists, parts)):
            return parts
        return [text]
    sources = [os.fspath(p) for p in path]
    if not sources:
        raise InputError("no inventory given", field="inventory")
    return sources


def join_sources(sources: Sequence[str]) -> str:
    """Several sources as one string (absolute, ``os.pathsep``-joined); one as given."""
    if len(sources) == 1:
        return sources[0]
    return os.pathsep.join(os.path.abspath(s) for s in sources)


def _non_empty(inventory: Inventory, where: str) -> Inventory:
    if not inventory.hosts:
        raise InputError("the inventory defines no hosts", file=where)
    return inventory


def _check_size(inventory: Inventory, file: str, limit: int | None) -> None:
    allowed = InventoryBuilder(file, "native", limit=limit).limit
    if len(inventory.hosts) > allowed:
        from inventory.builder import too_many_hosts

        raise too_many_hosts(allowed, file, None, None)


def _native_notes(file: str) -> tuple[str, ...]:
    base = os.path.dirname(file) or "."
    return tuple(
        f"{os.path.join(base, d)}: not read (rolldeck's native inventory format has no vars "
        "directories; use an Ansible INI or YAML inventory for them)"
        for d in ("group_vars", "host_vars")
        if os.path.isdir(os.path.join(base, d))
    )


def _load_ansible(
    sources: list[str], limit: int | None, parsed: dict[str, InventoryDoc]
) -> Inventory:
    builder = InventoryBuilder(sources[0], "ansible", group_priority=True, limit=limit)
    files: list[str] = []
    formats: set[str] = set()
    for source in sources:
        found = inventory_files(source) if os.path.isdir(source) else [source]
        if not found:
            raise InputError(
                "no inventory file in this directory (hidden files, group_vars/, host_vars/ "
                f"and names ending in {', '.join(IGNORED_SUFFIXES)} are skipped)",
                file=source,
            )
        for file in found:
            merged = len(sources) > 1 or file != source
            formats.add(_feed(file, builder, merged=merged, doc=parsed.get(file)))
            files.append(file)
    notes: list[str] = []
    vars_files: list[str] = []
    loaded: dict[str, VarsDirs] = {}
    groups, hosts = frozenset(builder.group_names), frozenset(builder.host_names)
    for source in sources:
        base = source if os.path.isdir(source) else (os.path.dirname(source) or ".")
        real = os.path.realpath(base)
        dirs = loaded.get(real)
        if dirs is None:
            dirs = loaded[real] = load_vars_dirs(base, groups, hosts)
            notes += dirs.notes
        vars_files += dirs.files
        builder.add_vars_layer(dirs.groups, dirs.hosts)
    builder.format = formats.pop() if len(formats) == 1 else "ansible"
    path = join_sources(sources)
    inventory = builder.build(path, AnsibleHostMaker(sources[0]))
    inventory.files = tuple(files)
    inventory.vars_files = tuple(dict.fromkeys(vars_files))
    inventory.notes = tuple(notes)
    return inventory


def inventory_files(directory: str) -> list[str]:
    """An inventory directory's files, as Ansible lists them (see the module docstring)."""
    found: list[str] = []
    seen: set[str] = set()

    def walk(path: str, depth: int) -> None:
        real = os.path.realpath(path)
        if real in seen or depth > 20:
            raise InputError("directory loop or nesting deeper than 20 levels", file=path)
        seen.add(real)
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            raise InputError(f"cannot list: {exc.strerror or exc}", file=path) from None
        for name in names:
            if name.startswith(".") or name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES):
                continue
            full = os.path.join(path, name)
            if os.path.isdir(full):
                walk(full, depth + 1)
            else:
                found.append(full)
                if len(found) > MAX_FILES:
                    raise InputError(f"more than {MAX_FILES:,} inventory files", file=directory)
        seen.discard(real)

    walk(directory, 0)
    return found


def _feed(file: str, builder: InventoryBuilder, *, merged: bool, doc: InventoryDoc | None) -> str:
    """Read one Ansible inventory file into ``builder``; its format. ``doc``: the file
    already composed (a single YAML file, looked at for the native format)."""
    if doc is not None:
        root = doc.root
        if root is None or is_null(root):
            raise InputError("the inventory file is empty (only comments)", file=file)
        feed_ansible_yaml(root, doc, builder)
        return "ansible-yaml"
    text = _read(file, empty_ok=merged)
    if _is_script(file, text):
        raise InputError(
            "an executable inventory script: rolldeck does not run inventory scripts "
            "(save its output: `ansible-inventory -i SCRIPT --list --yaml > inventory.yml`)",
            file=file,
        )
    if not text.strip():
        return "ini"
    if detect_format(text, file) == "ini":
        feed_ini(text, file, builder)
        return "ini"
    doc = InventoryDoc(text, file)
    root = doc.root
    if root is None or is_null(root):  # None narrows the type for mypy
        if merged:
            return "ansible-yaml"
        raise InputError("the inventory file is empty (only comments)", file=file)
    if is_native(doc, root):
        raise InputError(
            "rolldeck's native inventory format cannot be merged with other inventory files "
            "or vars directories; give it on its own",
            file=file,
        )
    feed_ansible_yaml(root, doc, builder)
    return "ansible-yaml"


def _is_script(file: str, text: str) -> bool:
    try:
        mode = os.stat(file).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)) and text.startswith("#!")


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


def _read(file: str, *, empty_ok: bool = False) -> str:
    text = read_text(file, MAX_BYTES, "an inventory file")
    if not text.strip() and not empty_ok:
        raise InputError("the inventory file is empty", file=file)
    return text
