"""What a simulated host runs for an SSH exec request.

Command lines are split with :mod:`shlex` (so the engine's shell-quoted templates,
``svc install '2.4.1'``, work) and may chain with ``;``, ``&&`` and ``||``; ``$?`` is
the last exit status and ``>&2`` sends a command's output to stderr. Other pipes and
redirections are refused with exit 2. ``sh`` (or ``bash``) without ``-c`` reads command
lines from stdin and runs each as it arrives, as a shell fed a script does (the
console's persistent probe shell). The command set: ``svc SUBCOMMAND`` (the
simulated service), ``true``, ``false``, ``echo``, ``sleep``, ``cat`` (stdin, or the
simulated ``/proc/loadavg`` and ``/proc/meminfo``), ``df``, ``hostname``; anything else
exits 127 with ``command not found`` on stderr, as a shell would.

Every command is a coroutine: the SSH layer cancels it on a signal or a closed
channel, which is how the engine stops remote work (hung installs, log tails).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from console.simfleet.host import SimHost
from console.simfleet.logs import LogPump

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
_CONNECTORS = (";", "&&", "||")
SVC_USAGE = (
    "usage: svc {version|status|install VERSION|activate VERSION|restart|drain|undrain|"
    "health|logs [--follow] [-n N]|metrics|vitals}\n"
)


@dataclass(slots=True)
class Context:
    """What a running command can touch: its host, the log pump and its channel."""

    host: SimHost
    pump: LogPump
    out: Callable[[str], None]
    err: Callable[[str], None]
    read: Callable[[], Awaitable[str | None]]  # stdin; None at EOF
    follow_sink: Callable[[str], None]  # out, minus lines the client cannot take yet


class _Syntax(Exception):
    pass


_TO_STDERR = "\x00>&2"  # an argv's last item: the command's stdout goes to stderr


def split_command_line(line: str) -> list[tuple[str, list[str]]]:
    """``a && b; c`` -> ``[(";", a), ("&&", b), (";", c)]`` (connector before each).

    A ``>&2`` redirection is kept as a trailing :data:`_TO_STDERR` item of its argv.
    """
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lex.whitespace_split = True
    try:
        tokens = list(lex)
    except ValueError as exc:
        raise _Syntax(f"sh: 1: Syntax error: {exc}") from None
    result: list[tuple[str, list[str]]] = []
    connector, argv = ";", list[str]()
    redirect = to_stderr = False
    for token in tokens:
        if redirect:
            if token != "2":
                raise _Syntax("sh: 1: only >&2 redirections are simulated")
            redirect, to_stderr = False, True
        elif token == ">&":
            redirect = True
        elif token in _CONNECTORS:
            if not argv:
                raise _Syntax(f'sh: 1: Syntax error: "{token}" unexpected')
            result.append((connector, [*argv, _TO_STDERR] if to_stderr else argv))
            connector, argv, to_stderr = token, [], False
        elif token and set(token) <= set(";&|<>()"):
            raise _Syntax(f"sh: 1: {token}: pipes and redirections are not simulated")
        else:
            argv.append(token)
    if redirect:
        raise _Syntax("sh: 1: Syntax error: end of file unexpected")
    if argv:
        result.append((connector, [*argv, _TO_STDERR] if to_stderr else argv))
    elif connector != ";":
        raise _Syntax("sh: 1: Syntax error: end of file unexpected")
    return result


async def execute(line: str, ctx: Context, last_status: int = 0) -> int:
    """Run a command line; returns its exit status (``last_status`` is ``$?`` at first)."""
    try:
        commands = split_command_line(line)
    except _Syntax as exc:
        ctx.err(f"{exc}\n")
        return 2
    status = last_status
    for connector, argv in commands:
        if (connector == "&&" and status != 0) or (connector == "||" and status == 0):
            continue
        argv = [a.replace("$?", str(status)) for a in argv]
        here = ctx
        if argv[-1] == _TO_STDERR:
            argv = argv[:-1]
            here = dataclasses.replace(ctx, out=ctx.err, follow_sink=ctx.err)
        status = await run_argv(argv, here)
    return status


async def run_script(ctx: Context) -> int:
    """``sh`` reading its script from stdin: each line runs once it has arrived whole;
    the exit status is the last command's, at end of input."""
    status = 0
    pending = ""
    while (data := await ctx.read()) is not None:
        pending += data
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.strip():
                status = await execute(line, ctx, status)
    if pending.strip():
        status = await execute(pending, ctx, status)
    return status


async def run_argv(argv: list[str], ctx: Context) -> int:
    name, args = argv[0], argv[1:]
    if name == "exec" and args:
        return await run_argv(args, ctx)
    if name in ("sh", "bash") and len(args) == 2 and args[0] == "-c":
        return await execute(args[1], ctx)
    if name in ("sh", "bash") and args in ([], ["-s"]):
        return await run_script(ctx)
    builtin = _BUILTINS.get(name)
    if builtin is None:
        ctx.err(f"bash: line 1: {name}: command not found\n")
        return 127
    return await builtin(args, ctx)


# --- shell utilities ---------------------------------------------------------------


async def _true(args: list[str], ctx: Context) -> int:
    return 0


async def _false(args: list[str], ctx: Context) -> int:
    return 1


async def _echo(args: list[str], ctx: Context) -> int:
    newline = True
    if args and args[0] == "-n":
        newline, args = False, args[1:]
    ctx.out(" ".join(args) + ("\n" if newline else ""))
    return 0


async def _sleep(args: list[str], ctx: Context) -> int:
    if len(args) != 1:
        ctx.err("sleep: missing operand\n")
        return 1
    try:
        seconds = float(args[0].rstrip("s"))
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        ctx.err(f"sleep: invalid time interval '{args[0]}'\n")
        return 1
    await asyncio.sleep(seconds)
    return 0


async def _cat(args: list[str], ctx: Context) -> int:
    if not args or args == ["-"]:
        while (data := await ctx.read()) is not None:
            ctx.out(data)
        return 0
    files = {"/proc/loadavg": ctx.host.loadavg, "/proc/meminfo": ctx.host.meminfo}
    status = 0
    for path in args:
        reader = files.get(path)
        if reader is None:
            ctx.err(f"cat: {path}: No such file or directory\n")
            status = 1
        else:
            ctx.out(reader())
    return status


async def _df(args: list[str], ctx: Context) -> int:
    ctx.out(ctx.host.df())
    return 0


async def _hostname(args: list[str], ctx: Context) -> int:
    ctx.out(f"{ctx.host.name}\n")
    return 0


# --- rolldeck-lease: the remote leases of console/engine/leases.py, in memory ---------

# SimHost -> lease directory -> name -> {"owner", "rollout", "beat"}; history by name.
_LEASES: weakref.WeakKeyDictionary[SimHost, dict[str, dict[str, dict[str, str]]]] = (
    weakref.WeakKeyDictionary()
)
_LEASE_HISTORY: weakref.WeakKeyDictionary[SimHost, dict[str, list[str]]] = (
    weakref.WeakKeyDictionary()
)


async def _rolldeck_lease(args: list[str], ctx: Context) -> int:
    """``rolldeck-lease OP DIR ARGS...``: the same operations and answers as the
    POSIX script of :mod:`console.engine.leases` (take, takeover, read, beat, release),
    kept in memory per simulated host."""
    if len(args) < 3:
        ctx.err("usage: rolldeck-lease take|takeover|read|beat|release DIR ARGS...\n")
        return 2
    op, directory, rest = args[0], args[1], args[2:]
    leases = _LEASES.setdefault(ctx.host, {}).setdefault(directory, {})
    history = _LEASE_HISTORY.setdefault(ctx.host, {})
    now = str(int(time.time()))

    def held(name: str) -> None:
        lease = leases[name]
        ctx.out(f"HELD\n{now}\n{lease['beat']}\n{lease['owner']}\n")

    def note(name: str, line: str) -> None:
        lines = history.setdefault(f"{directory}/{name}", [])
        lines.append(f"{now} {line}")
        del lines[:-500]

    if op == "take" and len(rest) == 4:
        name, rollout, owner, line = rest
        if name in leases:
            held(name)
        else:
            leases[name] = {"owner": owner, "rollout": rollout, "beat": now}
            note(name, line)
            ctx.out("TAKEN\n")
        return 0
    if op == "takeover" and len(rest) == 5:
        name, expected, rollout, owner, line = rest
        if name not in leases or leases[name]["rollout"] == expected:
            leases[name] = {"owner": owner, "rollout": rollout, "beat": now}
            note(name, line)
            ctx.out("TAKEN\n")
        else:
            held(name)
        return 0
    if op == "read" and len(rest) == 1:
        if rest[0] in leases:
            held(rest[0])
        else:
            ctx.out("FREE\n")
        return 0
    if op == "beat":
        rollout, names = rest[0], rest[1:]
        for name in names:
            if name in leases and leases[name]["rollout"] == rollout:
                leases[name]["beat"] = now
                ctx.out(f"OK {name}\n")
            else:
                ctx.out(f"LOST {name}\n")
        return 0
    if op == "release" and len(rest) == 3:
        name, rollout, line = rest
        if name in leases and leases[name]["rollout"] == rollout:
            del leases[name]
            note(name, line)
            ctx.out("RELEASED\n")
        else:
            ctx.out("NOTOURS\n")
        return 0
    ctx.err(f"rolldeck-lease: bad operation {op!r} or arguments\n")
    return 2


def lease_history(host: SimHost) -> dict[str, list[str]]:
    """Every lease history line kept on ``host`` (for tests), by ``DIR/NAME``."""
    return {k: list(v) for k, v in _LEASE_HISTORY.get(host, {}).items()}


# --- svc: the simulated service ----------------------------------------------------


def _version_arg(args: list[str], ctx: Context, sub: str) -> str | None:
    if len(args) != 1 or not _VERSION_RE.match(args[0]):
        ctx.err(f"usage: svc {sub} VERSION\n")
        return None
    return args[0]


async def _svc_install(args: list[str], ctx: Context) -> int:
    version = _version_arg(args, ctx, "install")
    if version is None:
        return 2
    host, service = ctx.host, ctx.host.service
    host.fire("install", version)
    if version in host.installed:
        ctx.out(f"{service} {version} is already installed\n")
        return 0
    duration = host.install_time(version)
    enospc = (
        f"svc: install {version}: write /opt/{service}/releases/{version}/{service}.tar.gz: "
        "No space left on device\n"
    )
    host.installing += 1
    try:
        ctx.out(f"fetching {service} {version}\n")
        if host.behaviour(version).install_hangs:
            await asyncio.Event().wait()  # until the engine signals or closes the channel
        await asyncio.sleep(duration * 0.6)
        if host.disk_full:
            ctx.err(enospc)
            return 1
        ctx.out(f"unpacking {service}-{version}.tar.gz\n")
        await asyncio.sleep(duration * 0.4)
        if host.disk_full:
            ctx.err(enospc)
            return 1
    finally:
        host.installing -= 1
    if version not in host.installed:  # a concurrent install of it may have finished first
        host.installed.append(version)
    ctx.out(f"installed {service} {version} in {duration:.3f}s\n")
    return 0


async def _svc_activate(args: list[str], ctx: Context) -> int:
    version = _version_arg(args, ctx, "activate")
    if version is None:
        return 2
    host = ctx.host
    host.fire("activate", version)
    if version not in host.installed:
        ctx.err(f"svc: activate {version}: release {version} is not installed\n")
        return 1
    previous, host.active = host.active, version
    ctx.out(f"activated {host.service} {version} (was {previous})\n")
    return 0


async def _svc_restart(args: list[str], ctx: Context) -> int:
    host = ctx.host
    host.fire("restart", host.active)
    down = host.restart()
    await asyncio.sleep(down)
    host.emit(
        [host.log_line(host.started_wall, "INFO ", f"starting {host.service} {host.running}")]
    )
    ctx.out(f"restarted {host.service} {host.running} (pid {host.pid})\n")
    return 0


async def _svc_drain(args: list[str], ctx: Context) -> int:
    ctx.host.fire("drain", ctx.host.active)
    ctx.host.advance(ctx.host.clock())
    await asyncio.sleep(ctx.host.scaled(0.2))  # in-flight requests finish
    ctx.host.drained = True
    ctx.out(f"drained {ctx.host.name}\n")
    return 0


async def _svc_undrain(args: list[str], ctx: Context) -> int:
    ctx.host.fire("undrain", ctx.host.active)
    ctx.host.advance(ctx.host.clock())
    ctx.host.drained = False
    ctx.out(f"undrained {ctx.host.name}\n")
    return 0


async def _svc_version(args: list[str], ctx: Context) -> int:
    ctx.host.fire("version", ctx.host.active)
    ctx.out(f"{ctx.host.active}\n")
    return 0


async def _svc_status(args: list[str], ctx: Context) -> int:
    h = ctx.host
    _, detail = h.health()
    ctx.out(
        f"active {h.active}\nrunning {h.running}\ninstalled {' '.join(h.installed)}\n"
        f"drained {'yes' if h.drained else 'no'}\nrestarts {h.restarts}\nhealth {detail}\n"
    )
    return 0


async def _svc_health(args: list[str], ctx: Context) -> int:
    ctx.host.fire("health", ctx.host.running)
    ok, detail = ctx.host.health(probe=True)
    ctx.out(detail + "\n")
    return 0 if ok else 1


async def _svc_logs(args: list[str], ctx: Context) -> int:
    follow, count, rest = False, None, list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-f", "--follow"):
            follow = True
        elif arg in ("-n", "--lines") and rest and rest[0].isdigit():
            count = int(rest.pop(0))
        else:
            ctx.err("usage: svc logs [--follow] [-n N]\n")
            return 2
    host = ctx.host
    history = host.recent_logs(count if count is not None else (0 if follow else 20))
    if history:
        ctx.out("".join(history))
    if not follow:
        return 0
    ctx.pump.follow(host, ctx.follow_sink)
    try:
        await asyncio.Event().wait()  # until the channel is closed or signalled
    finally:
        ctx.pump.unfollow(host, ctx.follow_sink)
    return 0


async def _svc_metrics(args: list[str], ctx: Context) -> int:
    text = ctx.host.metrics_text()
    if text is None:
        ctx.err(f"svc: metrics: connection refused: {ctx.host.service} is not running\n")
        return 7
    ctx.out(text)
    return 0


async def _svc_vitals(args: list[str], ctx: Context) -> int:
    ctx.out(ctx.host.vitals_text())
    return 0


_Handler = Callable[[list[str], Context], Awaitable[int]]

_SVC: dict[str, _Handler] = {
    "version": _svc_version,
    "status": _svc_status,
    "install": _svc_install,
    "activate": _svc_activate,
    "restart": _svc_restart,
    "drain": _svc_drain,
    "undrain": _svc_undrain,
    "health": _svc_health,
    "logs": _svc_logs,
    "metrics": _svc_metrics,
    "vitals": _svc_vitals,
}


async def _svc(args: list[str], ctx: Context) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        (ctx.out if args else ctx.err)(SVC_USAGE)
        return 0 if args else 2
    handler = _SVC.get(args[0])
    if handler is None:
        ctx.err(f"svc: unknown command '{args[0]}'\n{SVC_USAGE}")
        return 2
    delay = ctx.host.slow - 1.0
    if delay > 0:  # a slow host answers late
        await asyncio.sleep(0.1 * delay * ctx.host.time_scale)
    return await handler(args[1:], ctx)


_BUILTINS: dict[str, _Handler] = {
    "svc": _svc,
    "true": _true,
    "false": _false,
    "echo": _echo,
    "sleep": _sleep,
    "cat": _cat,
    "df": _df,
    "hostname": _hostname,
    "rolldeck-lease": _rolldeck_lease,
}
