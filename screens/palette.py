"""Command palette provider: every console action, searchable by name and purpose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True, slots=True)
class PaletteAction:
    name: str
    help: str
    run: Callable[[], object]


class ConsoleCommands(Provider):
    """Pulls the action list from the app (``app.palette_actions()``), so the palette
    and the key bindings never drift apart."""

    def _actions(self) -> list[PaletteAction]:
        get = getattr(self.app, "palette_actions", None)
        return list(get(self.screen)) if get is not None else []

    async def discover(self) -> Hits:
        for a in self._actions():
            yield DiscoveryHit(a.name, partial(a.run), help=a.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for a in self._actions():
            score = max(matcher.match(a.name), matcher.match(a.help) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(a.name), partial(a.run), help=a.help)
