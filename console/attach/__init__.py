"""Detach and attach: a rollout owned by a background process, consoles attached to it
over a Unix socket in the state directory (see protocol.py for the wire format)."""
