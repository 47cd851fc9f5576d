"""Shell completion, in the real shells: the generated script is sourced in bash and
its completion function driven the way readline drives it (COMP_WORDS, COMP_CWORD);
zsh and fish scripts are checked by their own shells' parsers where installed."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from console.attach.server import serve_engine
from console.completion import script
from tests.test_engine_helpers import journal_in, make_engine, run_engine, spec_from
from tests.waiting import wait_until

BIN = str(Path(sys.executable).parent)  # where the `rolldeck` command is installed


def bash_script(tmp: Path) -> Path:
    path = tmp / "rolldeck.bash"
    path.write_text(script("bash"))
    return path


def _complete_command(comp: Path, words: list[str]) -> list[str]:
    line = " ".join(words)
    quoted = " ".join(f"'{w}'" for w in words)
    body = (
        f"source '{comp}'\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n"
        "_shtab_rolldeck rolldeck\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    return ["bash", "--norc", "--noprofile", "-c", body]


def _fish_command(comp: Path, words: list[str]) -> list[str]:
    """fish's own completion engine: ``complete -C LINE`` prints candidate<TAB>help."""
    line = " ".join(words)
    return ["fish", "--no-config", "-c", f"source '{comp}'; complete -C '{line}'"]


def _env(state: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROLLDECK_")}
    return {
        **clean,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "ROLLDECK_STATE_DIR": str(state),
        "XDG_CONFIG_HOME": str(state / "no-config"),
    }


def complete(comp: Path, words: list[str], state: Path, cwd: Path | None = None) -> list[str]:
    out = subprocess.run(
        _complete_command(comp, words),
        capture_output=True,
        text=True,
        env=_env(state),
        cwd=cwd,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line]


pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def test_subcommands_and_options_complete(tmp_path: Path) -> None:
    comp = bash_script(tmp_path)
    assert complete(comp, ["rolldeck", "ru"], tmp_path) == ["run"]
    assert complete(comp, ["rolldeck", "sch"], tmp_path) == ["schema"]
    assert set(complete(comp, ["rolldeck", "schema", ""], tmp_path)) == {
        "spec",
        "inventory",
        "scenario",
        "events",
    }
    assert "--max-handshakes" in complete(comp, ["rolldeck", "run", "--max"], tmp_path)


def test_spec_files_complete(tmp_path: Path) -> None:
    comp = bash_script(tmp_path)
    (tmp_path / "deploy.yaml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "specs").mkdir()
    got = complete(comp, ["rolldeck", "check", ""], tmp_path, cwd=tmp_path)
    assert "deploy.yaml" in got and "specs" in got and "notes.txt" not in got


async def test_attach_completes_the_ids_of_running_rollouts(tmp_path: Path) -> None:
    comp = bash_script(tmp_path)
    fish = tmp_path / "rolldeck.fish"
    fish.write_text(script("fish"))
    done = make_engine(
        spec_from(), 2, journal=journal_in(tmp_path, "shop-old"), rollout_id="shop-old"
    )
    await run_engine(done)  # finished: shown by `show`, not offered to `attach`

    live = make_engine(
        spec_from("batches: [1, 2]\n"),
        3,
        journal=journal_in(tmp_path, "shop-live"),
        rollout_id="shop-live",
    )
    live.fake.on(r"^install", delay=0.2)
    server = serve_engine(live.engine, tmp_path)
    task = asyncio.create_task(live.engine.run())
    try:
        await wait_until(lambda: (tmp_path / "shop-live.sock").exists(), what="the socket")
        live.engine.pause(reason="held for the completion test")

        async def ask(words: list[str], shell: str = "bash") -> list[str]:
            argv = _complete_command(comp, words) if shell == "bash" else _fish_command(fish, words)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_env(tmp_path),
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            return [line.split("\t")[0] for line in out.decode().splitlines() if line]

        assert await ask(["rolldeck", "attach", ""]) == ["shop-live"]
        assert await ask(["rolldeck", "attach", "shop-l"]) == ["shop-live"]
        assert set(await ask(["rolldeck", "show", ""])) == {"shop-live", "shop-old"}
        assert await ask(["rolldeck", "show", "shop-o"]) == ["shop-old"]
        if shutil.which("fish"):  # the same answers from fish's own completion engine
            assert await ask(["rolldeck", "ru"], "fish") == ["run"]
            assert await ask(["rolldeck", "attach", ""], "fish") == ["shop-live"]
            assert set(await ask(["rolldeck", "show", ""], "fish")) == {"shop-live", "shop-old"}
    finally:
        live.engine.abort(reason="test over")
        await asyncio.wait_for(task, 30)
        await server.close()


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_parse_in_their_shells(tmp_path: Path, shell: str) -> None:
    text = script(shell)
    assert "attach" in text and "completion --ids running" in text
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (the script is generated, not run)")
    path = tmp_path / f"rolldeck.{shell}"
    path.write_text(text)
    out = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    if shell == "zsh":  # as the docs say: eval'd after compinit, it registers itself
        body = (
            f'autoload -U compinit; compinit -u -D; eval "$(<{path})"; '
            "print -r -- $_comps[rolldeck]"
        )
        out = subprocess.run(["zsh", "-f", "-c", body], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "_shtab_rolldeck", out.stderr
