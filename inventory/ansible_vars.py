"""Ansible's connection variables, turned into :class:`Host` fields.

``ansible_host``, ``ansible_port``, ``ansible_user`` and the private key file (and
their older ``ansible_ssh_*`` spellings) are consumed: they become ``address``,
``port``, ``user`` and ``key`` and do not stay in ``vars``. Where both spellings are
set, the current one wins.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from console.core.errors import InputError
from inventory.builder import ResolvedHost, is_clean_name
from inventory.model import Host
from inventory.yamlnodes import parse_port

# Field -> the variables that set it, preferred first.
CONNECTION_VARS: dict[str, tuple[str, ...]] = {
    "address": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
}
_CONSUMED = frozenset(name for names in CONNECTION_VARS.values() for name in names)


_Field = tuple[str, Any, int | None, str]  # var, value, line, file


class AnsibleHostMaker:
    """Builds hosts for Ansible inventories (errors name the file that set the var)."""

    def __init__(self, file: str) -> None:
        self.file = file

    def __call__(self, resolved: ResolvedHost) -> Host:
        merged = resolved.vars
        fields: dict[str, _Field | None] = {
            field: next(((n, *merged[n]) for n in names if n in merged), None)
            for field, names in CONNECTION_VARS.items()
        }
        address = self._text(resolved.name, fields["address"]) or resolved.name
        user = self._text(resolved.name, fields["user"])
        key = self._text(resolved.name, fields["key"], blanks=True)
        port: int | None = None
        if fields["port"] is not None:
            var, value, line, file = fields["port"]
            port = parse_port(value)
            if port is None:
                raise InputError(
                    f"expected a port number 1-65535, found {value!r}",
                    file=file,
                    line=line,
                    field=f"{resolved.name}.{var}",
                )
        return Host(
            name=resolved.name,
            address=address,
            port=port,
            user=user,
            key=_expanduser(key) if key else None,
            groups=resolved.groups,
            vars={k: v for k, (v, _line, _file) in merged.items() if k not in _CONSUMED},
            source_line=resolved.line,
        )

    def _text(self, host: str, sourced: _Field | None, *, blanks: bool = False) -> str | None:
        """A connection value as text; ``blanks`` allows inner spaces (key paths)."""
        if sourced is None:
            return None
        var, value, line, file = sourced
        problem = None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            problem = f"expected a string, found {_describe(value)}"
        else:
            text = str(value).strip()
            if not text:
                problem = "must not be empty"
            elif not (text.isprintable() if blanks else is_clean_name(text)):
                problem = f"{text!r} has a blank or a control character"
        if problem:
            raise InputError(problem, file=file, line=line, field=f"{host}.{var}")
        return text


@functools.lru_cache(maxsize=256)
def _expanduser(path: str) -> str:
    # Cached: thousands of hosts usually share one key file from [all:vars].
    return os.path.expanduser(path)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


# Ansible vars rolldeck reads or that change nothing for it (interpreters are for
# Ansible's modules; rolldeck runs shell commands). become is honoured by the engine.
_HARMLESS_PREFIXES = ("ansible_become",)
_HARMLESS = frozenset({"ansible_group_priority", "ansible_managed", "ansible_facts"})
_SSH_CONNECTIONS = frozenset({"ssh", "smart", "paramiko", "paramiko_ssh"})


def unhonoured(vars: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``ansible_*`` vars of a host rolldeck does not act on: (var, why), sorted.

    rolldeck connects with OpenSSH's settings (``~/.ssh/config``) and the inventory's
    host, port, user and key; every other connection setting Ansible knows would be
    silently ignored, so each one is named.
    """
    out: list[tuple[str, str]] = []
    for name in sorted(vars):
        if not name.startswith("ansible_") or name in _HARMLESS:
            continue
        if name.startswith(_HARMLESS_PREFIXES) or name.endswith("_interpreter"):
            continue
        value = vars[name]
        if name == "ansible_connection":
            if str(value) in _SSH_CONNECTIONS:
                continue
            out.append((f"ansible_connection={value}", "rolldeck connects over SSH only"))
        elif name in ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"):
            out.append((name, "rolldeck authenticates with keys and the SSH agent only"))
        else:
            out.append((name, "not honoured by rolldeck (set it in ~/.ssh/config instead)"))
    return out
