"""``group_vars/`` and ``host_vars/``, read as Ansible's ``host_group_vars`` plugin does.

Beside an inventory file (or inside an inventory directory), ``group_vars/NAME`` and
``host_vars/NAME`` hold a group's or a host's vars. For each group or host Ansible
takes the FIRST of ``NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json`` that exists
(so ``web/`` shadows ``web.yml``); a directory is read whole: its files in sorted
order, recursing into subdirectories without an extension, skipping hidden files,
backups (``~``) and files whose extension is not ``.yml``, ``.yaml``, ``.json`` or
none. Later files win key by key (a shallow merge, Ansible's default ``replace``).

Unlike Ansible, nothing found there is skipped silently: an entry naming no group or
host of the inventory, or shadowed by another, becomes a note (``rolldeck check`` and
``rolldeck inventory`` print them). Every vars file is size-checked before it is
parsed, and values encrypted with ``!vault`` are refused with the var and the file.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field

from yaml.nodes import Node, ScalarNode

from console.core.errors import InputError
from console.core.yamlnodes import is_null
from inventory.builder import Sourced, VarsLayer
from inventory.yamlnodes import InventoryDoc

VARS_EXTENSIONS = (".yml", ".yaml", ".json")
# A vars file is hand-written; past this it is a mistake (or an attack), refused
# before it is read into memory.
MAX_VARS_BYTES = 16 * 1024 * 1024
# A vars directory tree holding more files than this is not a vars directory.
MAX_VARS_FILES = 10_000


@dataclass(slots=True)
class VarsDirs:
    """One base directory's group_vars/ and host_vars/ data, and what was read."""

    groups: VarsLayer = field(default_factory=dict)
    hosts: VarsLayer = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_vars_dirs(basedir: str, groups: Collection[str], hosts: Collection[str]) -> VarsDirs:
    """``basedir/group_vars`` for ``groups`` and ``basedir/host_vars`` for ``hosts``."""
    out = VarsDirs()
    _load(os.path.join(basedir, "group_vars"), "group", groups, out.groups, out)
    _load(os.path.join(basedir, "host_vars"), "host", hosts, out.hosts, out)
    return out


def _load(
    directory: str, what: str, names: Collection[str], layer: VarsLayer, out: VarsDirs
) -> None:
    if not os.path.exists(directory):
        return
    if not os.path.isdir(directory):
        out.notes.append(f"{directory}: not a directory, not read")
        return
    entries = _listdir(directory)
    # entity -> extension -> entry; "" is the entry named exactly like the entity.
    candidates: dict[str, dict[str, str]] = {}
    for entry in entries:
        candidates.setdefault(entry, {})[""] = entry
        base, ext = os.path.splitext(entry)
        if ext in VARS_EXTENSIONS and base:
            candidates.setdefault(base, {})[ext] = entry
    used: set[str] = set()
    for name in sorted(candidates):
        if name not in names or name.startswith(os.sep):
            continue
        by_ext = candidates[name]
        chosen = next(by_ext[ext] for ext in ("", *VARS_EXTENSIONS) if ext in by_ext)
        used.add(chosen)
        data: dict[str, Sourced] = {}
        path = os.path.join(directory, chosen)
        files = _dir_files(path, [0]) if os.path.isdir(path) else [path]
        for file in files:
            data.update(load_vars_file(file))
            out.files.append(file)
        layer[name] = data
        for other in by_ext.values():
            if other != chosen and other not in used:
                used.add(other)
                first = ", ".join(name + e for e in ("", *VARS_EXTENSIONS))
                out.notes.append(
                    f"{os.path.join(directory, other)}: not read, "
                    f"{os.path.join(directory, chosen)} is (Ansible reads the first of {first})"
                )
    for entry in entries:
        if entry in used or entry.startswith("."):
            continue
        base, ext = os.path.splitext(entry)
        if base in names and ext in VARS_EXTENSIONS:
            continue  # noted above as shadowed
        out.notes.append(
            f"{os.path.join(directory, entry)}: no {what} {_strip(entry)!r} in the inventory, "
            "not read"
        )


def _strip(entry: str) -> str:
    base, ext = os.path.splitext(entry)
    return base if ext in VARS_EXTENSIONS and base else entry


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError as exc:
        raise InputError(f"cannot list: {exc.strerror or exc}", file=directory) from None


def _dir_files(directory: str, count: list[int], depth: int = 0) -> list[str]:
    """A vars directory's files, as Ansible's ``_get_dir_vars_files``."""
    if depth > 20:
        raise InputError("vars directories nested too deeply (more than 20)", file=directory)
    found: list[str] = []
    for entry in _listdir(directory):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        ext = os.path.splitext(entry)[1]
        path = os.path.join(directory, entry)
        if os.path.isdir(path) and not ext:
            found += _dir_files(path, count, depth + 1)
        elif os.path.isfile(path) and (not ext or ext in VARS_EXTENSIONS):
            count[0] += 1
            if count[0] > MAX_VARS_FILES:
                raise InputError(f"more than {MAX_VARS_FILES:,} vars files", file=directory)
            found.append(path)
    return found


def read_text(file: str, limit: int, what: str) -> str:
    """A file's text, refused past ``limit`` bytes before it is read in full."""
    try:
        with open(file, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise InputError(f"{what} larger than {_size(limit)} ({_size(size)})", file=file)
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, not {what}", file=file) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    if len(data) > limit:  # a pipe or a device: its size is only known by reading
        raise InputError(f"{what} larger than {_size(limit)}", file=file)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError("not valid UTF-8 text", file=file, line=line) from None


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def load_vars_file(file: str) -> dict[str, Sourced]:
    """One vars file (YAML or JSON): a mapping of vars, each with its line and file."""
    text = read_text(file, MAX_VARS_BYTES, "a vars file")
    doc = InventoryDoc(text, file)
    root = doc.root
    if root is None or is_null(root):
        return {}  # an empty file, as Ansible: nothing
    out: dict[str, Sourced] = {}
    for key, key_node, value in doc.mapping(root, "", "a mapping of variables", merge=True):
        _refuse_vault(doc, value, key)
        out[key] = (doc.plain(value, key), key_node.start_mark.line + 1, file)
    return out


def _refuse_vault(doc: InventoryDoc, node: Node, field: str) -> None:
    if isinstance(node, ScalarNode) and node.tag == "!vault":
        raise doc.error(
            "this value is encrypted with ansible-vault (!vault); rolldeck does not decrypt "
            "vault values: pass it as a secret (spec `secrets:` and an environment variable)",
            node,
            field,
        )
