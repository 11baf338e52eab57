"""The one Jinja environment, its fast path, and rendering of commands and files."""
