"""known_hosts as OpenSSH finds them: which files, loaded once and shared, TOFU appends.

Which files (``man ssh_config``): the user files (``UserKnownHostsFile``, default
``~/.ssh/known_hosts ~/.ssh/known_hosts2``; ``none``: no user file) then the global
ones (``GlobalKnownHostsFile``, default ``/etc/ssh/ssh_known_hosts
/etc/ssh/ssh_known_hosts2``). asyncssh parses both options but neither expands
them nor reads the defaults OpenSSH reads: :func:`files_from_config` does, from
asyncssh's resolved config (``~`` everywhere; ``%`` tokens and ``${VAR}`` in user
files, as OpenSSH). A key trusted by any file is trusted (a ``@revoked`` line in any
file refuses it, as in OpenSSH); a first-use key is written only to the first user
file, hashed (``|1|salt|hash``) when ``HashKnownHosts yes`` applies to the host.

asyncssh would re-read and re-parse the known_hosts files inside every connection's
``connection_made`` (blocking the event loop, once per host). Here each file set is
parsed once in a worker thread and reloaded only when a file's mtime or size changes,
and the parsed :class:`asyncssh.SSHKnownHosts` is handed to every connection.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import logging
import os
import re
import shlex
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncssh
from asyncssh.pattern import WildcardPatternList

log = logging.getLogger(__name__)

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_USER_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
DEFAULT_SSH_CONFIG = "~/.ssh/config"
MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
_TOKEN = re.compile(r"%(.)")
_ENV = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True, slots=True)
class HostKeyVerdict:
    """What the host-key check decided for one handshake, for the error message."""

    lookup: str  # the name matched against known_hosts, with its port: "[127.0.0.1]:2222"
    presented: str  # "ssh-ed25519 SHA256:..."
    known: tuple[str, ...]  # fingerprints known_hosts holds for this host (empty: unknown)
    accepted: bool = False


@dataclass(frozen=True, slots=True)
class KnownHostsFiles:
    """Where one host's keys are looked up: user files first, then global ones.

    Global files are read-only for rolldeck; a key trusted on first use goes to
    ``writable`` (the first user file), or nowhere when there is no user file."""

    user: tuple[str, ...]
    system: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.user + self.system

    @property
    def writable(self) -> str | None:
        return self.user[0] if self.user else None

    def with_user(self, paths: Iterable[str]) -> KnownHostsFiles:
        """The same global files, other user files (``--known-hosts``, the inventory's
        ``known_hosts``: what ``-o UserKnownHostsFile=`` is to OpenSSH)."""
        return KnownHostsFiles(resolve_paths(list(paths)), self.system)


@dataclass(frozen=True, slots=True)
class HostNames:
    """The names one connection goes by, for ``%`` tokens and ``Match`` lines."""

    original: str  # as given (an ssh config alias, an inventory address): %n
    hostname: str  # after HostName: %h
    port: int  # %p
    user: str  # the remote user: %r
    local_user: str  # %u
    alias: str | None = None  # HostKeyAlias: %k (else the original name)
    tag: str = ""  # Tag, for Match tagged


class ConfigLookup(Protocol):
    """asyncssh's resolved ``SSHClientConfig`` (only its public ``get``)."""

    def get(self, option: str, default: object = None) -> object: ...


def local_username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise ValueError("unknown local username: set USER or LOGNAME in the environment") from None


def host_names(config: ConfigLookup, original: str, local_user: str) -> HostNames:
    """The names a host goes by once asyncssh resolved its config (HostName, Port, User
    and HostKeyAlias from the config, else the values asked for)."""
    hostname = config.get("Hostname") or original
    port = config.get("Port") or 22
    user = config.get("User") or local_user
    alias = config.get("HostKeyAlias")
    tag = config.get("Tag") or ""
    return HostNames(
        original=original,
        hostname=str(hostname),
        port=int(port) if isinstance(port, int | str) else 22,
        user=str(user),
        local_user=local_user,
        alias=str(alias) if alias else None,
        tag=str(tag),
    )


def files_from_config(config: ConfigLookup, names: HostNames) -> KnownHostsFiles:
    """The known_hosts files OpenSSH reads for this host under this config.

    asyncssh keeps ``()`` for an option the config does not set and ``[]`` for
    ``none``; a user file may use ``~``, the ``%`` tokens of ``man ssh_config`` (%%, %C,
    %d, %h, %i, %k, %L, %l, %n, %p, %r, %u) and ``${VAR}``; a global file ``~`` only."""
    user_value = config.get("UserKnownHostsFile", ())
    global_value = config.get("GlobalKnownHostsFile", ())
    if user_value == ():
        user = tuple(str(Path(p).expanduser()) for p in DEFAULT_USER_FILES)
    else:
        tokens = connection_tokens(names)
        user = tuple(
            expand_user_file(str(p), tokens) for p in _listed(user_value, "UserKnownHostsFile")
        )
    system: tuple[str, ...]
    if global_value == ():
        system = DEFAULT_GLOBAL_FILES
    else:
        listed = _listed(global_value, "GlobalKnownHostsFile")
        system = tuple(str(Path(p).expanduser()) for p in listed)
    return KnownHostsFiles(user, system)


def _listed(value: object, option: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{option}: expected a list of files, got {value!r}")
    return [str(v) for v in value if str(v).lower() != "none"]


def connection_tokens(names: HostNames) -> dict[str, str]:
    """OpenSSH's tokens for UserKnownHostsFile (``man ssh_config``, TOKENS)."""
    local_long = socket.gethostname()
    port = str(names.port)
    tokens = {
        "%": "%",
        "C": hashlib.sha1((local_long + names.hostname + port + names.user).encode()).hexdigest(),
        "h": names.hostname,
        "k": names.alias or names.original,
        "L": local_long.split(".", 1)[0],
        "l": local_long,
        "n": names.original,
        "p": port,
        "r": names.user,
        "u": names.local_user,
        "i": str(os.getuid()),
    }
    home = os.path.expanduser("~")
    if home != "~":
        tokens["d"] = home
    return tokens


def expand_user_file(value: str, tokens: dict[str, str]) -> str:
    """``~``, then ``%`` tokens and ``${VAR}``, as OpenSSH expands a user known_hosts file."""
    expanded = os.path.expanduser(value)

    def token(match: re.Match[str]) -> str:
        try:
            return tokens[match.group(1)]
        except KeyError:
            raise ValueError(
                f"UserKnownHostsFile {value!r}: unknown token %{match.group(1)} "
                "(allowed: %%, %C, %d, %h, %i, %k, %L, %l, %n, %p, %r, %u)"
            ) from None

    def env(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"UserKnownHostsFile {value!r}: ${{{name}}} is not set")
        return os.environ[name]

    return _ENV.sub(env, _TOKEN.sub(token, expanded))


def hash_known_hosts(
    config_paths: list[str] | None, names: HostNames, asked_user: str | None = None
) -> bool:
    """Whether ``HashKnownHosts yes`` applies to this host (asyncssh skips the option).

    ``config_paths`` as given to asyncssh (None: ``~/.ssh/config`` when readable). The
    first value found in a block that applies wins, as for every OpenSSH option;
    ``Host`` and ``Match`` (all, host, originalhost, user, localuser, tagged, canonical,
    final, negated) are evaluated as asyncssh evaluates them, in one pass: ``Match user``
    sees ``asked_user`` or the first ``User`` set above it, else the local user. A
    ``Match`` rolldeck cannot evaluate here (exec, localnetwork, address) counts as
    applying: when in doubt the entry is hashed (OpenSSH reads both forms), and a
    warning says where."""
    if config_paths is None:
        default = Path(DEFAULT_SSH_CONFIG).expanduser()
        config_paths = [str(default)] if os.access(default, os.R_OK) else []
    walker = _HashWalker(names, asked_user)
    for path in config_paths:
        found = walker.walk(Path(path), True, 0)
        if found is not None:
            return found
    return False


class _HashWalker:
    def __init__(self, names: HostNames, asked_user: str | None) -> None:
        self.names = names
        self.set: dict[str, str] = {"user": asked_user} if asked_user else {}

    def walk(self, path: Path, active: bool, depth: int) -> bool | None:
        if depth > MAX_INCLUDE_DEPTH:
            raise ValueError(f"{path}: Include nested deeper than {MAX_INCLUDE_DEPTH}")
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                keyword, args = _split(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
            where = f"{path}:{number}"
            if keyword == "host":
                active = WildcardPatternList(",".join(args)).matches(self.names.original)
            elif keyword == "match":
                active = self.match(args, where)
            elif keyword == "include" and active:
                for included in _include_paths(args):
                    found = self.walk(included, True, depth + 1)
                    if found is not None:
                        return found
            elif keyword in ("user", "hostname", "tag") and active and args:
                self.set.setdefault(keyword, args[0])  # the first value wins
            elif keyword == "hashknownhosts" and active:
                value = args[0].lower() if args else ""
                if value in ("yes", "true"):
                    return True
                if value in ("no", "false"):
                    return False
                raise ValueError(f"{where}: HashKnownHosts: expected yes or no, got {value!r}")
        return None

    def match(self, args: list[str], where: str) -> bool:
        names, now = self.names, self.set  # what the lines above this one set
        values: dict[str, Callable[[], str]] = {
            "host": lambda: now.get("hostname", names.original),
            "originalhost": lambda: names.original,
            "user": lambda: now.get("user", names.local_user),
            "localuser": lambda: names.local_user,
            "tagged": lambda: now.get("tag", ""),
        }
        result = True
        queue = list(args)
        while queue:
            criterion = queue.pop(0).lower()
            negated = criterion.startswith("!")
            criterion = criterion.removeprefix("!")
            if criterion == "all":
                hit = True
            elif criterion == "canonical":
                hit = False  # rolldeck (as asyncssh here) does not canonicalise names
            elif criterion == "final":
                hit = True
            elif criterion in values:
                if not queue:
                    raise ValueError(f"{where}: Match {criterion}: missing pattern")
                hit = WildcardPatternList(queue.pop(0)).matches(values[criterion]())
            else:
                log.warning(
                    "%s: Match %s is not evaluated for HashKnownHosts; new host keys are "
                    "written hashed",
                    where,
                    criterion,
                )
                return True
            if hit == negated:
                result = False
        return result


def _split(line: str) -> tuple[str, list[str]]:
    """``Keyword value...`` or ``Keyword=value``, as OpenSSH and asyncssh split it."""
    words = shlex.split(line)
    first = words[0]
    if "=" in first:
        first, _, rest = first.partition("=")
        words = ([rest] if rest else []) + words[1:]
    else:
        words = words[1:]
    if words and words[0].startswith("="):
        head = words[0][1:]
        words = ([head] if head else []) + words[1:]
    return first.lower(), words


def _include_paths(patterns: list[str]) -> list[Path]:
    """Include's files: relative patterns are under ~/.ssh (as asyncssh reads them)."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.anchor:
            base, rest = Path(path.anchor), str(Path(*path.parts[1:]))
        else:
            base, rest = Path("~/.ssh").expanduser(), pattern
        found += sorted(p for p in base.glob(rest) if p.is_file())
    return found


def fingerprint(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint()}"


def lookup_name(host: str, port: int | None) -> str:
    """The name known_hosts files use: ``host``, or ``[host]:port`` off port 22."""
    return host if port in (None, 22) else f"[{host}]:{port}"


def hashed_name(name: str, salt: bytes | None = None) -> str:
    """OpenSSH's hashed host field: ``|1|base64(salt)|base64(HMAC-SHA1(salt, name))``."""
    salt = os.urandom(20) if salt is None else salt
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def entry_line(host: str, port: int | None, key: asyncssh.SSHKey, *, hashed: bool = False) -> str:
    public = key.export_public_key("openssh").decode("ascii").split()
    name = lookup_name(host, port)
    return f"{hashed_name(name) if hashed else name} {public[0]} {public[1]}\n"


def trusted_keys(
    known: asyncssh.SSHKnownHosts, host: str, addr: str, port: int | None
) -> list[asyncssh.SSHKey]:
    """The plain host keys ``known`` trusts for this host (CA and revoked entries aside)."""
    return list(asyncssh.match_known_hosts(known, host, addr, port)[0])


def files_recording(
    paths: Iterable[str], host: str, addr: str, port: int | None
) -> list[tuple[str, tuple[str, ...]]]:
    """Which files hold which plain keys for this host (blocking: for a refusal's words)."""
    found = []
    for path in paths:
        try:
            keys = trusted_keys(_read(path), host, addr, port)
        except (OSError, ValueError):
            continue
        if keys:
            found.append((path, tuple(fingerprint(k) for k in keys)))
    return found


def describe_files(paths: Iterable[str]) -> str:
    """``a, b (absent), c (unreadable)``: every file looked in, for a refusal (blocking)."""
    words = []
    for path in paths:
        if not os.path.exists(path):
            words.append(f"{path} (absent)")
        elif not os.access(path, os.R_OK):
            words.append(f"{path} (unreadable)")
        else:
            words.append(path)
    return ", ".join(words)


def append_entry(path: str, line: str) -> None:
    """Append one known_hosts line; a new file (and directory) is private to the user."""
    target = Path(path).expanduser()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: str) -> asyncssh.SSHKnownHosts:
    known = asyncssh.SSHKnownHosts()
    _load_into(known, path)
    return known


def _load_into(known: asyncssh.SSHKnownHosts, path: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    try:
        known.load(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class KnownHostsCache:
    """Parsed known_hosts per file set; blocking methods, call them via ``to_thread``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[tuple[tuple[int, int], ...], object]] = {}

    def load(self, paths: tuple[str, ...]) -> asyncssh.SSHKnownHosts:
        """The parsed union of ``paths``; a missing or unreadable file counts as empty
        (OpenSSH skips it too); a malformed one is an error naming it."""
        signature = tuple(_stat(p) for p in paths)
        with self._lock:
            cached = self._cache.get(paths)
            if cached is not None and cached[0] == signature:
                return cached[1]  # type: ignore[return-value]
        known = asyncssh.SSHKnownHosts()
        for path, sig in zip(paths, signature, strict=True):
            if sig != (-1, -1) and os.access(path, os.R_OK):
                _load_into(known, path)
        with self._lock:
            self._cache[paths] = (signature, known)
        return known


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)


def resolve_paths(paths: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Expanded paths; the user's default file when none are given."""
    chosen = [p for p in (paths or []) if p and p.lower() != "none"]
    if not chosen:
        chosen = [DEFAULT_KNOWN_HOSTS]
    return tuple(str(Path(p).expanduser()) for p in chosen)
