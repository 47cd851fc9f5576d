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


class AnsibleHostMaker:
    """Builds hosts for one Ansible inventory file (errors name that file)."""

    def __init__(self, file: str) -> None:
        self.file = file

    def __call__(self, resolved: ResolvedHost) -> Host:
        merged = resolved.vars
        fields: dict[str, tuple[str, Any, int | None] | None] = {
            field: next(((n, *merged[n]) for n in names if n in merged), None)
            for field, names in CONNECTION_VARS.items()
        }
        address = self._text(resolved.name, fields["address"]) or resolved.name
        user = self._text(resolved.name, fields["user"])
        key = self._text(resolved.name, fields["key"], blanks=True)
        port: int | None = None
        if fields["port"] is not None:
            var, value, line = fields["port"]
            port = parse_port(value)
            if port is None:
                raise InputError(
                    f"expected a port number 1-65535, found {value!r}",
                    file=self.file,
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
            vars={k: v for k, (v, _line) in merged.items() if k not in _CONSUMED},
            source_line=resolved.line,
        )

    def _text(
        self, host: str, sourced: tuple[str, Any, int | None] | None, *, blanks: bool = False
    ) -> str | None:
        """A connection value as text; ``blanks`` allows inner spaces (key paths)."""
        if sourced is None:
            return None
        var, value, line = sourced
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
            raise InputError(problem, file=self.file, line=line, field=f"{host}.{var}")
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
