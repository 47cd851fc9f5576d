"""rolldeck's console themes: Textual ``Theme`` objects, their stylesheet, persistence.

Colours are data (:mod:`themes.palette`); widgets and ``.tcss`` refer to them only by
semantic variable (``$host-failed``, ``$host-healthy``, ``$batch-active``...), so a
theme never changes layout and the colour-blind-safe theme is a palette swap.
"""

from __future__ import annotations

from pathlib import Path

from themes.palette import DEFAULT_THEME, SEMANTIC_VARIABLES, THEME_NAMES, THEMES
from themes.store import load_theme_choice, save_theme_choice

STYLESHEET = Path(__file__).with_name("rolldeck.tcss")

__all__ = [
    "DEFAULT_THEME",
    "SEMANTIC_VARIABLES",
    "STYLESHEET",
    "THEMES",
    "THEME_NAMES",
    "load_theme_choice",
    "save_theme_choice",
]
