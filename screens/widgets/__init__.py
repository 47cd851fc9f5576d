"""Widgets of the console: each renders one concern of the read model."""
