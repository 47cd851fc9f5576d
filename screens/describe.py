"""The console's timeline words: console.core.describe's, with the console's colours."""

from __future__ import annotations

from console.core import events as ev
from console.core.describe import describe as describe_event
from screens.format import HOST_STATE_VARS, SEVERITY_VARS


def describe(event: ev.Event) -> tuple[str, str, str]:
    """``(glyph, words, theme variable)`` for a timeline event: the glyph and words
    every front end uses; the colour is the host state's, else the severity's."""
    said = describe_event(event)
    if isinstance(event, ev.HostStateChanged):
        var = HOST_STATE_VARS[event.state]
    else:
        var = SEVERITY_VARS[said.severity]
    return said.glyph, said.text(), var
