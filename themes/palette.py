"""The three themes as ``textual.theme.Theme`` objects with rolldeck's semantic variables.

Every theme defines every name in :data:`SEMANTIC_VARIABLES`; the stylesheet and the
widgets that colour Rich text (table cells, log lines) read only those names. The
``contrast`` theme uses the Okabe-Ito palette (distinguishable under the common
colour-vision deficiencies) on black, and the console never signals by colour alone:
every state also has a symbol and a word.
"""

from __future__ import annotations

from textual.theme import Theme

SEMANTIC_VARIABLES: tuple[str, ...] = (
    "host-pending",
    "host-running",
    "host-healthy",
    "host-failed",
    "host-rolled-back",
    "host-skipped",
    "host-frozen",
    "batch-active",
    "series-new",
    "series-baseline",
    "threshold",
    "log-error",
    "log-host",
    "muted",
)

_DARK = Theme(
    name="rolldeck-dark",
    primary="#4A9EE0",
    secondary="#2B5D8C",
    accent="#E8A33D",
    warning="#E8A33D",
    error="#E5534B",
    success="#57AB5A",
    foreground="#D6DEE6",
    background="#111418",
    surface="#181C21",
    panel="#222830",
    dark=True,
    variables={
        "host-pending": "#8B949E",
        "host-running": "#4A9EE0",
        "host-healthy": "#57AB5A",
        "host-failed": "#E5534B",
        "host-rolled-back": "#C69026",
        "host-skipped": "#986EE2",
        "host-frozen": "#39C5CF",
        "batch-active": "#E8A33D",
        "series-new": "#E8A33D",
        "series-baseline": "#4A9EE0",
        "threshold": "#E5534B",
        "log-error": "#FF7B72",
        "log-host": "#7D8590",
        "muted": "#7D8590",
        "footer-key-foreground": "#4A9EE0",
    },
)

_LIGHT = Theme(
    name="rolldeck-light",
    primary="#0B5CAD",
    secondary="#4A86C5",
    accent="#9A5B00",
    warning="#9A5B00",
    error="#C0262D",
    success="#1A7F37",
    foreground="#1F2328",
    background="#F6F8FA",
    surface="#FFFFFF",
    panel="#E6EAEF",
    dark=False,
    variables={
        "host-pending": "#59636E",
        "host-running": "#0B5CAD",
        "host-healthy": "#1A7F37",
        "host-failed": "#C0262D",
        "host-rolled-back": "#8A5A00",
        "host-skipped": "#6F42C1",
        "host-frozen": "#0E7C86",
        "batch-active": "#9A5B00",
        "series-new": "#B35900",
        "series-baseline": "#0B5CAD",
        "threshold": "#C0262D",
        "log-error": "#C0262D",
        "log-host": "#59636E",
        "muted": "#59636E",
        "footer-key-foreground": "#0B5CAD",
    },
)

# Okabe-Ito: orange E69F00, sky blue 56B4E9, bluish green 009E73, yellow F0E442,
# blue 0072B2, vermillion D55E00, reddish purple CC79A7.
_CONTRAST = Theme(
    name="rolldeck-contrast",
    primary="#56B4E9",
    secondary="#0072B2",
    accent="#F0E442",
    warning="#F0E442",
    error="#D55E00",
    success="#56B4E9",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1A1A1A",
    dark=True,
    luminosity_spread=0.2,
    text_alpha=1.0,
    variables={
        "host-pending": "#BBBBBB",
        "host-running": "#F0E442",
        "host-healthy": "#56B4E9",
        "host-failed": "#D55E00",
        "host-rolled-back": "#CC79A7",
        "host-skipped": "#CC79A7",
        "host-frozen": "#009E73",
        "batch-active": "#F0E442",
        "series-new": "#E69F00",
        "series-baseline": "#56B4E9",
        "threshold": "#D55E00",
        "log-error": "#D55E00",
        "log-host": "#BBBBBB",
        "muted": "#BBBBBB",
        "footer-key-foreground": "#F0E442",
        "block-cursor-background": "#F0E442",
        "block-cursor-foreground": "#000000",
    },
)

THEMES: tuple[Theme, ...] = (_DARK, _LIGHT, _CONTRAST)
THEME_NAMES: tuple[str, ...] = tuple(t.name for t in THEMES)
DEFAULT_THEME = _DARK.name
