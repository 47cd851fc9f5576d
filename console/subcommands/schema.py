"""``rolldeck schema``: the JSON Schemas of the files users write and of ``--json``."""

from __future__ import annotations

import argparse
import json
import sys

from console.schemas import SCHEMAS

NAME = "schema"
HELP = "print a JSON Schema: spec (default), inventory, scenario or events"
DESCRIPTION = """\
Print a JSON Schema (draft-07) on stdout:
  spec       a rollout spec, for editors: save it and put
             `# yaml-language-server: $schema=rolldeck-spec.schema.json`
             on the spec's first line (VS Code YAML, Neovim yamlls, Helix)
  inventory  a YAML inventory (rolldeck's native format, or Ansible's)
  scenario   a simulated-fleet scenario (rolldeck drill)
  events     one line of the `rolldeck run --json` stream (docs/events.md)"""
ORDER = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default="spec", choices=sorted(SCHEMAS), help="which")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(SCHEMAS[args.name](), indent=2) + "\n")
    return 0
