"""Generated documentation: ``python -m console.docgen`` rewrites the pages built from
code (the event stream, the spec reference); ``--check`` exits 1 when one drifted.

tests/test_docgen.py runs the check, so a new event field or spec key without its
page regenerated fails the suite.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from console.core.eventschema import events_markdown
from console.spec.schema import spec_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def keys_markdown() -> str:
    """``docs/console-keys.md``: every binding of the console, by screen, with its id
    (what ``[keymap]`` in config.toml remaps)."""
    from console.app import keymap_rows  # the console's own bindings (Textual)

    out = [
        "# Console keys",
        "",
        "<!-- Generated from the console's bindings by `python -m console.docgen`; "
        "do not edit. -->",
        "",
        "`?` in the console lists the same keys, as remapped. Each binding has an id: remap",
        "it in `config.toml` (see [Configuration](configuration.md)):",
        "",
        "```toml",
        "[keymap]",
        'pause = "space"          # one key',
        'abort = "ctrl+x,A"       # or several, comma-separated',
        "```",
        "",
        "or for one shell: `ROLLDECK_KEYMAP='pause=space;abort=ctrl+x'`. An unknown id is",
        "refused with its file and line. `rolldeck config --keys` prints this table with",
        "your keys. Read-only consoles (`attach --read-only`) disable the control keys.",
        "",
        "| screen | key | id | what |",
        "|---|---|---|---|",
    ]
    for section, bid, keys, what in keymap_rows({}):
        out.append(f"| {section} | `{keys}` | `{bid}` | {what} |")
    return "\n".join(out) + "\n"


PAGES: dict[str, Callable[[], str]] = {
    "events.md": events_markdown,
    "spec.md": spec_markdown,
    "console-keys.md": keys_markdown,
}


def drifted(docs: Path = DOCS) -> list[str]:
    """The generated pages whose file differs from what the code says now."""
    out = []
    for name, make in PAGES.items():
        path = docs / name
        if not path.exists() or path.read_text(encoding="utf-8") != make():
            out.append(name)
    return out


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = drifted()
        for name in stale:
            print(f"docs/{name} is out of date: run python -m console.docgen", file=sys.stderr)
        return 1 if stale else 0
    DOCS.mkdir(exist_ok=True)
    for name, make in PAGES.items():
        (DOCS / name).write_text(make(), encoding="utf-8")
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
