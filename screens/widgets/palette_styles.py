"""Rich styles resolved from the active theme's semantic variables.

Rich text (table cells, log lines) cannot use ``$variables`` the way ``.tcss`` can, so
widgets that build Rich text resolve the theme's variables once per theme change
through :func:`theme_styles` and re-render when the theme changes.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from textual.app import App
from textual.color import Color, ColorParseError

from themes import SEMANTIC_VARIABLES

_EXTRA = ("primary", "accent", "error", "warning", "success", "foreground")


def theme_styles(app: App[Any]) -> dict[str, Style]:
    """Semantic variable name -> Rich foreground style for the current theme (cached
    per theme: building Textual's colour system is not free at frame rate)."""
    cache: dict[str, dict[str, Style]] = app.__dict__.setdefault("_rolldeck_styles", {})
    styles = cache.get(app.theme)
    if styles is None:
        styles = cache[app.theme] = _resolve(app)
    return styles


def _resolve(app: App[Any]) -> dict[str, Style]:
    variables = app.get_css_variables()
    out: dict[str, Style] = {}
    for name in (*SEMANTIC_VARIABLES, *_EXTRA):
        value = variables.get(name)
        if value is None:
            out[name] = Style()
            continue
        try:
            out[name] = Style(color=Color.parse(value).rich_color)
        except ColorParseError:
            out[name] = Style()
    return out
