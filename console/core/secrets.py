"""Secrets: which var names hold one, and masking their values in any text.

One :class:`Redactor` per rollout, applied at one place (the engine's emitter) to
every text field of every event, so the journal, the bus, ``--json``, attached
consoles and ``show`` never see a secret; ``rolldeck check`` and ``inventory`` use the
same rule to mask what they print.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"

# Environment variables rolldeck itself reads that hold a secret: their values are
# masked like a secret var's (``templating.redactor_for``). The become password
# (console/become.py) is written to sudo's stdin, never on a command line.
BECOME_PASSWORD_ENV = "ROLLDECK_BECOME_PASSWORD"
SECRET_ENV = (BECOME_PASSWORD_ENV,)

# Substrings, plus Ansible's ``*_pass`` (ansible_ssh_pass, ansible_become_pass) and
# ``pw``/``pwd`` as whole words of a snake_case name.
_SECRET_WORDS = re.compile(
    r"password|passwd|token|secret|key|(?:^|_)(?:pass|pw|pwd)(?:_|$)", re.IGNORECASE
)
# Names that hold the path of an SSH private key: a path, not the key itself.
_KEY_PATH_NAMES = frozenset(
    {"key", "ssh_key", "ansible_ssh_private_key_file", "ansible_private_key_file"}
)


def is_secret_name(name: str, declared: Collection[str] = ()) -> bool:
    """True for vars named in ``secrets`` or whose name looks secret (not key paths)."""
    if name in declared:
        return True
    words = {m.group(0).lower() for m in _SECRET_WORDS.finditer(name)}
    if not words:
        return False
    if words == {"key"}:
        lowered = name.lower()
        if lowered in _KEY_PATH_NAMES or lowered.endswith(("_file", "_path")):
            return False
    return True


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret parts of a URL: everything after the host (path, query, fragment;
    a webhook's token lives there) and the user info, when there are any."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return (url,)
    if not parts.netloc:
        return (url,)
    out = []
    rest = url.split(parts.netloc, 1)[1]
    if rest.strip("/"):
        out.append(rest.lstrip("/"))
    if "@" in parts.netloc:
        out.append(parts.netloc.rsplit("@", 1)[0])
    return tuple(out)


def mask_url(url: str) -> str:
    """``https://hooks.example.com/***``: scheme and host kept, user info, path and
    query masked (what ``check``, the journal and the timeline show of a webhook)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.hostname:
        return MASK
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    masked = MASK if url_secrets(url) else ""
    return f"{parts.scheme}://{host}{port}/{masked}"


def mask_vars(values: Mapping[str, Any], declared: Collection[str] = ()) -> dict[str, Any]:
    """``values`` with every secret var's value replaced by :data:`MASK`."""
    return {k: MASK if is_secret_name(k, declared) else v for k, v in values.items()}


class Redactor:
    """Replaces every known secret value in a text with ``***``.

    Each value is matched raw and in its shell-quoted form (a rendered command holds
    the latter, which is not a substring of the former when the value has quotes);
    each line of a multi-line value is matched too, since output arrives line by line.
    Booleans and empty values are never secrets.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if not value:
                continue
            forms.add(value)
            forms.add(shlex.quote(value))
            forms.update(line for line in value.splitlines() if line.strip())
        self._values = frozenset(forms)
        ordered = sorted(forms, key=len, reverse=True)  # longest first: no partial masks
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def redact(self, text: str) -> str:
        """``text`` with every secret masked; ``text`` itself when none is in it."""
        if self._pattern is None or not text:
            return text
        if not any(value in text for value in self._values):  # 5x faster than the regex
            return text
        return self._pattern.sub(MASK, text)
