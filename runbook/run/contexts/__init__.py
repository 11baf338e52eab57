"""Execution contexts: where a ``Command`` runs. ``base`` is the interface."""
