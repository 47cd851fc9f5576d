"""Every hint rolldeck prints names a flag that exists (issue 18: a refused resume
advised ``--allow-unreachable``, which ``resume`` did not accept).

Two checks against each subcommand's real parser (its module's ``add_arguments``,
as ``console.cli`` builds it):

* every :class:`console.core.hints.FlagHint` (the one helper for hints that name a
  flag) names only flags of the subcommand it is made for;
* every other string in the sources that names a ``--flag`` (f-strings whole,
  docstrings and ``add_argument`` calls aside) is checked against the subcommand it
  names (``rolldeck attach ... --read-only``), else against the subcommands that print
  the module's messages: a subcommand's own module prints its own, and ``PRINTED_BY``
  lists the others. A new message naming a flag in a module not listed fails here
  until it is routed through ``flag_hint`` or listed.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
import re
from pathlib import Path

import console
import console.subcommands
from console.core import hints

ROOT = Path(__file__).resolve().parent.parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
NAMED = re.compile(r"rolldeck ([a-z][a-z-]*)([^`;\n()'\"]*)")
ENGINE = ("run", "resume", "rollback")  # the commands that own an engine with the lock

# (module, flag) -> the subcommands whose output may carry that module's message.
PRINTED_BY: dict[tuple[str, str], tuple[str, ...]] = {
    ("console/engine/leases.py", "--break-lock"): ENGINE,
    ("console/engine/leases.py", "--reason"): ENGINE,
    ("console/headless.py", "--yes"): ("run", "resume", "rollback"),
    ("console/lock_options.py", "--break-lock"): ENGINE,
    ("console/lock_options.py", "--reason"): ENGINE,
    ("console/lock_options.py", "--lock-wait"): ENGINE,
    ("console/resume.py", "--service"): ("resume",),
    ("console/runtime/rollout.py", "--inventory"): ("run", "check"),
    ("console/runtime/rollout.py", "--targets"): ("run", "check"),
    ("console/store/lock.py", "--break-lock"): ENGINE,
    ("console/core/safe_files.py", "--state-dir"): (*ENGINE, "history", "show", "attach"),
    ("console/core/safe_files.py", "--attach-group"): ("run",),
    ("console/attach/server.py", "--attach-group"): ("run",),
    ("console/transport/ssh.py", "--accept-new-host-keys"): ENGINE,
    ("console/transport/cli_options.py", "--connect-timeout"): ENGINE,
    ("console/attach/protocol.py", "--state-dir"): (*ENGINE, "attach"),
    # the event stream's and the spec's documentation (`rolldeck schema`, docs/): the
    # commands whose flags they name
    ("console/core/eventschema.py", "--operator"): ENGINE,
    ("console/core/eventschema.py", "--json"): (*ENGINE, "demo", "drill", "attach", "show"),
    ("console/spec/schema.py", "--inventory"): ("run", "check"),
    ("console/spec/schema.py", "--metrics-textfile"): ("run",),
}
# Modules whose --words are not rolldeck's flags, each with its reason.
NOT_ROLLDECK = {
    "console/simfleet/commands.py": "the simulated host's own `svc` tool",
    "console/simfleet/layout.py": "the simulated host's `svc logs --follow`",
    "inventory/loader.py": "an inventory script's --list/--yaml",
    "console/core/hints.py": "the helper's own validation message",
    "console/attach/detach.py": "the argv of the detached re-exec (tested by the detach tests)",
    "console/cli.py": "the top-level --version",
    "console/simfleet/process.py": "the argv of the fleet child (hidden flags of sim-fleet)",
    "console/simfleet/prometheus.py": "the argv of the Prometheus server it starts",
    "console/completion.py": "the generated scripts call the hidden `completion --ids`",
    "console/docgen.py": "the docs generator's own --check, and key help quoting attach",
    "inventory/ansible_yaml.py": "ansible-inventory's --list/--yaml, in a refusal's advice",
}


def subcommand_flags() -> dict[str, set[str]]:
    """Each subcommand's flags, from a parser built by its own ``add_arguments``."""
    out: dict[str, set[str]] = {}
    for info in pkgutil.iter_modules(console.subcommands.__path__):
        mod = importlib.import_module(f"console.subcommands.{info.name}")
        if not hasattr(mod, "NAME"):
            continue
        parser = argparse.ArgumentParser(prog=f"rolldeck {mod.NAME}")
        mod.add_arguments(parser)
        flags: set[str] = set()
        for line in parser.format_help().splitlines():
            if line.startswith("  -"):  # an option's line: its flags before the help
                flags.update(FLAG.findall(re.split(r"\s{2,}", line.strip())[0]))
        out[mod.NAME] = flags
    return out


def test_every_flag_hint_names_flags_of_its_command() -> None:
    for info in pkgutil.walk_packages(console.__path__, "console."):
        if info.name.startswith(("console.app", "console.__main__")):
            continue
        importlib.import_module(info.name)
    flags = subcommand_flags()
    assert hints.REGISTRY, "no flag hint registered"
    commands = {h.command for h in hints.REGISTRY}
    assert {"run", "resume", "rollback"} <= commands
    for h in hints.REGISTRY:
        assert h.command in flags, f"hint for unknown subcommand {h.command!r}: {h}"
        missing = [f for f in h.flags if f not in flags[h.command]]
        assert not missing, f"`rolldeck {h.command}` has no {missing}: hint {str(h)!r}"


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string but docstrings and add_argument's; an f-string
    whole, its placeholders as {}."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        documented = isinstance(
            node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        )
        if documented and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(n) for n in node.values)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
    return out


def test_every_flag_named_in_a_message_exists() -> None:
    flags = subcommand_flags()
    problems: list[str] = []
    files = sorted(
        [*ROOT.joinpath("console").rglob("*.py"), *ROOT.joinpath("inventory").rglob("*.py")]
    )
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel in NOT_ROLLDECK:
            continue
        own = None
        if rel.startswith("console/subcommands/") and path.stem != "__init__":
            own = path.stem.replace("_", "-")
        for line, text in _strings(ast.parse(path.read_text(), rel)):
            named: dict[int, str] = {}
            for m in NAMED.finditer(text):
                if m[1] in flags:
                    for f in FLAG.finditer(m[2]):
                        named[m.start(2) + f.start()] = m[1]
            for f in FLAG.finditer(text):
                if f.start() in named:
                    where: tuple[str, ...] = (named[f.start()],)
                elif own is not None:
                    where = (own,)
                elif (rel, f[0]) in PRINTED_BY:
                    where = PRINTED_BY[(rel, f[0])]
                else:
                    problems.append(
                        f"{rel}:{line}: {f[0]} in {text[:60]!r}: which subcommands print it? "
                        "make it a console.core.hints.flag_hint or list it in PRINTED_BY"
                    )
                    continue
                for command in where:
                    if f[0] not in flags.get(command, set()):
                        problems.append(f"{rel}:{line}: `rolldeck {command}` has no {f[0]}")
    assert not problems, "\n".join(problems)


def test_the_scan_finds_a_missing_flag(tmp_path: Path) -> None:
    """The scanner itself: a message naming a flag the command lacks is found."""
    tree = ast.parse('x = f"try `rolldeck resume {rid} --no-such-flag`"\n')
    ((_, text),) = _strings(tree)
    m = NAMED.search(text)
    assert m is not None and m[1] == "resume"
    assert FLAG.findall(m[2]) == ["--no-such-flag"]
    assert "--no-such-flag" not in subcommand_flags()["resume"]
    assert "--allow-unreachable" in subcommand_flags()["resume"]
