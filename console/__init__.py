"""rolldeck's core: spec, plan, engine, transport, health, journal, simulated fleet, CLI.

Nothing in this package (outside ``console/app.py``) imports Textual: the engine emits
typed events and accepts commands, and any front end (headless, the Textual console,
an attached observer) consumes the same stream.
"""

__version__ = "0.1.0"
