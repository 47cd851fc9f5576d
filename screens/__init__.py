"""Textual screens, widgets and messages of the rolldeck console.

Screens render a :class:`console.core.state.RolloutView` that the app folds from engine
events; they talk back only through :class:`screens.context.ConsoleContext`. Pure
helpers (``format``, ``rows``, ``changes``, ``chart``, ``describe``)
import no Textual and are unit-tested on their own.
"""
