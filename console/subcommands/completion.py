"""``rolldeck completion SHELL``: the shell completion script."""

from __future__ import annotations

import argparse
import sys

NAME = "completion"
HELP = "print the shell completion script: bash, zsh or fish"
DESCRIPTION = """\
Print a completion script for subcommands, options, spec files and rollout ids (from
the state directory: `attach` offers the running ones). Install it:

  bash   rolldeck completion bash > ~/.local/share/bash-completion/completions/rolldeck
  zsh    rolldeck completion zsh > "${fpath[1]}/_rolldeck"   (then: compinit)
  fish   rolldeck completion fish > ~/.config/fish/completions/rolldeck.fish

or, for the running shell only: source <(rolldeck completion bash), or in zsh
eval "$(rolldeck completion zsh)" (after compinit), or rolldeck completion fish | source"""
ORDER = 85
SHELLS = ("bash", "zsh", "fish")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", nargs="?", choices=SHELLS, help="which shell")
    parser.add_argument("--ids", choices=("running", "all"), help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", metavar="DIR", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from console import completion

    if args.ids:  # called by the scripts: one id a line, nothing on error
        sys.stdout.writelines(f"{i}\n" for i in completion.rollout_ids(args.ids, args.state_dir))
        return 0
    if args.shell is None:
        print("rolldeck completion: name a shell: bash, zsh or fish", file=sys.stderr)
        return 2
    sys.stdout.write(completion.script(args.shell))
    return 0
