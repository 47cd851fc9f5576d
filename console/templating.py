"""Command templates, and which secrets the rollout masks.

A spec's commands carry placeholders: ``{host}``, ``{address}``, ``{version}``,
``{new_version}``, ``{previous_version}``, ``{service}`` and ``{vars.NAME}``; ``{{`` and
``}}`` are literal braces.

``{version}`` is the version the host should run *now*: the rollout's target while
deploying, the host's previous version while it rolls back (its rollback steps, its
health gating and the monitor's health watch), so one version-aware health check
serves both directions. ``{new_version}`` is always the rollout's target;
``{previous_version}`` is the version read before the host was changed.

The set of names is fixed, so a typo is caught when the spec is loaded (:func:`parse`),
not on host 37 of batch 3. Every substituted value is passed through
:func:`shlex.quote` unless the step is ``raw``: a value is data, never shell syntax.

Vars come from three places, most specific last: environment variables named in the
spec's ``secrets`` (so a token never has to be written to a file), the spec's ``vars``
(defaults for every host), then the host's inventory vars.

:func:`redactor_for` builds the rollout's :class:`~console.core.secrets.Redactor`:
the values of vars named in ``secrets`` and of vars whose name looks secret
(password, token, secret, key; a key *file* path is not a secret).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.core.errors import InputError, did_you_mean
from console.core.secrets import SECRET_ENV, Redactor, is_secret_name, url_secrets
from console.spec.model import webhook_url

if TYPE_CHECKING:
    from console.spec.model import RolloutSpec
    from inventory.model import Host

# A rendered command is one argument of the remote shell (``sh -c COMMAND``), and
# Linux refuses any single argument over 128 KiB (MAX_ARG_STRLEN, "Argument list too
# long") on every host alike: refused before anything runs, with room for a wrapper
# (``sudo``, the lease script) around it.
MAX_COMMAND_BYTES = 100 * 1024
WEBHOOK_SECRET_MIN = 6  # characters: a shorter URL path is masked where shown, not everywhere
FIXED_NAMES = ("host", "address", "version", "new_version", "previous_version", "service")
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_ALLOWED_TEXT = ", ".join(f"{{{n}}}" for n in (*FIXED_NAMES, "vars.NAME"))
_UNREAD = "(the spec needs current_version, and it must have printed a version)"
_MISSING = {
    "previous_version": f"the host's previous version is unknown {_UNREAD}",
    "version": f"the version this host goes back to is unknown {_UNREAD}",
}


class TemplateError(InputError):
    """A bad template or a value a template needs that is missing.

    ``offset`` is the character offset in the template (for load-time errors), so the
    spec loader can point at the right line of a multi-line command.
    """

    def __init__(self, message: str, *, offset: int = 0, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str  # "host", ..., or "vars.NAME"
    offset: int

    @property
    def var(self) -> str | None:
        """The var name of a ``{vars.NAME}`` placeholder, else None."""
        return self.name[5:] if self.name.startswith("vars.") else None


Part = str | Placeholder


@functools.lru_cache(maxsize=1024)
def parse(template: str) -> tuple[Part, ...]:
    """Split a template into literal text and placeholders; raise TemplateError.

    Cached: the engine renders the same few templates for every host.
    """
    parts: list[Part] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "}":
            if template.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError(
                f"unmatched '}}' at offset {i} (write }}}} for a literal brace)", offset=i
            )
        if ch != "{":
            j = min(_next_brace(template, i), n)
            literal.append(template[i:j])
            i = j
            continue
        if template.startswith("{{", i):
            literal.append("{")
            i += 2
            continue
        end = template.find("}", i + 1)
        inner = template[i + 1 : end] if end != -1 else ""
        if end == -1 or "{" in inner:
            raise TemplateError(
                f"unmatched '{{' at offset {i} (write {{{{ for a literal brace)", offset=i
            )
        _check_name(inner, i)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Placeholder(inner, i))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _next_brace(text: str, start: int) -> int:
    a, b = text.find("{", start), text.find("}", start)
    found = [x for x in (a, b) if x != -1]
    return min(found) if found else len(text)


def _check_name(name: str, offset: int) -> None:
    if name in FIXED_NAMES:
        return
    if not name.strip():
        raise TemplateError(
            f"empty placeholder {{{name}}} (write {{{{}}}} for literal braces)", offset=offset
        )
    if name.startswith("vars."):
        if VAR_NAME.fullmatch(name[5:]):
            return
        raise TemplateError(
            f"bad placeholder {{{name}}}: a var name is letters, digits and '_'", offset=offset
        )
    hint = did_you_mean(name, FIXED_NAMES)
    if not hint and VAR_NAME.fullmatch(name):
        hint = f" (did you mean {{vars.{name}}}?)"
    raise TemplateError(
        f"unknown placeholder {{{name}}}{hint}; allowed: {_ALLOWED_TEXT}; "
        "write {{ and }} for literal braces",
        offset=offset,
    )


def placeholders(template: str) -> tuple[Placeholder, ...]:
    """The placeholders a template uses (raises TemplateError if it is malformed)."""
    return tuple(p for p in parse(template) if isinstance(p, Placeholder))


def render(template: str, context: Mapping[str, object], *, raw: bool = False) -> str:
    """Fill a template from ``context`` (see :func:`build_context`); quote each value.

    A missing var, or ``{previous_version}`` when it is unknown, raises TemplateError:
    running a command with a silently empty value is worse than not running it.
    A command longer than :data:`MAX_COMMAND_BYTES` raises TemplateError too, naming
    its largest value: no host could run it.
    """
    out: list[str] = []
    size = 0
    largest: tuple[int, str] = (0, "")
    for part in parse(template):
        if isinstance(part, str):
            out.append(part)
            size += len(part)
            continue
        value = _lookup(part, context)
        text = _as_text(value)
        out.append(text if raw else shlex.quote(text))
        size += len(out[-1])
        largest = max(largest, (len(out[-1]), part.name))
    command = "".join(out)
    if size * 4 > MAX_COMMAND_BYTES:  # characters first; the bytes only when they may be over
        n = len(command.encode("utf-8", "surrogateescape"))
        if n > MAX_COMMAND_BYTES:
            host = context.get("host")
            raise TemplateError(command_too_long(n, largest[1], host), field=largest[1] or None)
    return command


def check_command_sizes(spec: RolloutSpec, hosts: Iterable[Host]) -> None:
    """Every command of the spec, rendered for every host, within
    :data:`MAX_COMMAND_BYTES`; else an InputError naming the spec's file, the command's
    line and field, the first host over and how many are.

    Measured without rendering where the values are small (a sum of lengths, with
    room for quoting); only a host whose values could reach the limit is rendered."""
    commands = list(_commands(spec))
    for where, template, raw in commands:
        over: list[tuple[str, str]] = []
        parts = parse(template)
        literal = sum(len(p) for p in parts if isinstance(p, str))
        for host in hosts:
            context = build_context(spec, host, spec.version, rollback=where.startswith("rb"))
            estimate = literal
            for part in parts:
                if isinstance(part, Placeholder):
                    with contextlib.suppress(TemplateError):  # missing: check's own error
                        estimate += len(_as_text(_lookup(part, context)))
            # quoting at most quintuples a value ('"'"'), UTF-8 is at most 4 bytes a char
            if estimate * 20 <= MAX_COMMAND_BYTES:
                continue
            try:
                render(template, context, raw=raw)
            except TemplateError as exc:
                if exc.message.startswith("the command is "):
                    over.append((host.name, exc.message))
        if over:
            field = where.removeprefix("rb:")
            more = f" (and {len(over) - 1} more hosts)" if len(over) > 1 else ""
            raise InputError(
                f"{over[0][1]}{more}",
                file=spec.path,
                line=spec.lines.get(f"{field}.run") or spec.lines.get(field),
                field=field,
            )


def _commands(spec: RolloutSpec) -> Iterator[tuple[str, str, bool]]:
    """(where, template, raw) of every command; a rollback command's where starts
    with ``rb:`` ({version} is then the version it goes back to)."""
    from console.spec.model import commands  # lazily: the spec's loader imports this module

    for where, step in commands(spec):
        key = f"rb:{where}" if where.startswith("rollback") else where
        yield key, step.run, step.raw


def command_too_long(size: int, largest: str, host: object = None) -> str:
    """Why a rendered command of ``size`` bytes is refused (``largest``: the placeholder
    with the largest value)."""
    where = f" for host {host}" if host else ""
    biggest = f": {{{largest}}} is the largest value" if largest else ""
    return (
        f"the command is {_kib(size)}{where}, over the {_kib(MAX_COMMAND_BYTES)} limit of a "
        f"rendered command (Linux refuses one argument over 128 KiB){biggest}; pass a "
        "large value as a file on the host instead"
    )


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB" if size >= 10 * 1024 else f"{size / 1024:.1f} KiB"


def _lookup(part: Placeholder, context: Mapping[str, object]) -> object:
    var = part.var
    if var is None:
        value = context.get(part.name)
        if value is None:
            why = _MISSING.get(part.name, "no value in this context")
            raise TemplateError(f"{{{part.name}}} cannot be filled: {why}", field=part.name)
        return value
    variables = context.get("vars") or {}
    if not isinstance(variables, Mapping) or var not in variables:
        host = context.get("host")
        where = f" for host {host}" if host else ""
        raise TemplateError(
            f"{{vars.{var}}} is not set{where}: define it in the spec's vars or the "
            "inventory's host or group vars",
            field=f"vars.{var}",
        )
    return variables[var]


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def context_vars(
    spec: RolloutSpec, host: Host | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Vars visible to a host's templates: env secrets < spec vars < host vars."""
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = {name: env[name] for name in spec.secrets if name in env}
    merged.update(spec.vars)
    if host is not None:
        merged.update(host.vars)
    return merged


def build_context(
    spec: RolloutSpec,
    host: Host,
    previous_version: str | None,
    *,
    rollback: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Everything a template may name, for one host.

    ``rollback``: the host goes back, so ``{version}`` (what it should run now) is
    ``previous_version``, and cannot be filled when that was never read.
    """
    return {
        "host": host.name,
        "address": host.address,
        "version": previous_version if rollback else spec.version,
        "new_version": spec.version,
        "previous_version": previous_version,
        "service": spec.service,
        "vars": context_vars(spec, host, environ),
    }


def redactor_for(
    spec: RolloutSpec,
    hosts: Iterable[Host] = (),
    *,
    environ: Mapping[str, str] | None = None,
) -> Redactor:
    """Secrets of the spec and of every given host (one redactor for a rollout)."""
    values: set[str] = set()
    scopes: list[Host | None] = [None, *hosts]
    for host in scopes:
        for name, value in context_vars(spec, host, environ).items():
            if value is None or isinstance(value, bool):
                continue
            if is_secret_name(name, spec.secrets):
                values.add(_as_text(value))
        if spec.become_password is not None and host is not None:
            # become's password template ('{vars.x}'), whatever the var is called
            try:
                context = build_context(spec, host, None, environ=environ)
                values.add(render(spec.become_password, context, raw=True))
            except TemplateError:
                pass  # not set for this host: nothing to mask, and become says so
    env = os.environ if environ is None else environ
    values.update(env[name] for name in SECRET_ENV if env.get(name))
    for hook in spec.notify:  # a webhook URL's path and user info are its token
        if hook.webhook is not None:
            try:
                url = webhook_url(hook, env)
            except KeyError:
                url = hook.webhook
            # short paths ("/hook") would mask the word everywhere; tokens are long
            values.update(p for p in url_secrets(url) if len(p) >= WEBHOOK_SECRET_MIN)
    values.update(_prometheus_secrets(spec, environ))
    return Redactor(values)


def _prometheus_secrets(spec: RolloutSpec, environ: Mapping[str, str] | None) -> set[str]:
    """The analysis's Prometheus credentials, literal or ``'{vars.x}'``: secrets."""
    prom = spec.analysis.prometheus if spec.analysis is not None else None
    if prom is None:
        return set()
    context = {"service": spec.service, "vars": context_vars(spec, None, environ)}
    out: set[str] = set()
    for template in (prom.bearer_token, prom.basic_auth[1] if prom.basic_auth else None):
        with contextlib.suppress(TemplateError):
            if template and (value := render(template, context, raw=True)):
                out.add(value)
    return out
