"""``?``: every key of every screen, with what it does (from the Bindings themselves,
so a key remapped through ``App.set_keymap`` shows its new key)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

Section = tuple[str, Iterable[Binding]]


def key_text(binding: Binding, keymap: Mapping[str, str]) -> str:
    keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
    shown = []
    for key in keys.split(","):
        key = key.strip()
        if binding.key_display and keys == binding.key:
            shown.append(binding.key_display)
        else:
            shown.append({"question_mark": "?", "slash": "/"}.get(key, key))
    return " / ".join(dict.fromkeys(shown))


def help_table(sections: Iterable[Section], keymap: Mapping[str, str]) -> Group:
    """One titled key table per section (a table cell per key, so tests can read it)."""
    parts: list[RenderableType] = []
    for title, bindings in sections:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", no_wrap=True, min_width=7)
        table.add_column(no_wrap=True, min_width=10)
        table.add_column()
        for b in bindings:
            table.add_row(
                key_text(b, keymap), b.description or b.action, Text(b.tooltip, style="dim")
            )
        parts += [Text(title, style="bold underline"), table, Text("")]
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="help-close", tooltip="Close help"),
    ]

    def __init__(self, sections: list[Section], keymap: Mapping[str, str], note: str = "") -> None:
        super().__init__(classes="help")
        self.sections = sections
        self.keymap = keymap
        self.note = note

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static("rolldeck keys", id="help-title")
            if self.note:
                yield Static(self.note, id="help-note")
            yield Static(help_table(self.sections, self.keymap))
            yield Static("Esc or ? closes.  Ctrl+P opens the command palette.", id="help-foot")

    def action_close(self) -> None:
        self.dismiss()
