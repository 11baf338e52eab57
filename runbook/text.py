"""Untrusted text made safe to show on a terminal.

Command output may hold escape sequences (``\\x1b]0;TITLE\\x07`` retitles the terminal,
``\\x1b[1A\\x1b[2K`` rewrites the line above — a fake "ok"). The console and ``show`` print
every control character except newline and tab as a visible escape; the journal keeps
the bytes as they were.
"""

from __future__ import annotations

import re

# C0 controls but \t and \n, DEL, and the C1 range (a lone 0x9b is CSI on some terminals).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(m: re.Match[str]) -> str:
    c = m.group()
    return {"\r": "\\r", "\x1b": "\\e"}.get(c, f"\\x{ord(c):02x}")


def printable(text: str) -> str:
    """``text`` with every control character but ``\\n`` and ``\\t`` shown as an escape."""
    return _CONTROL.sub(_escaped, text)
