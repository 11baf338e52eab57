"""Untrusted text made safe to show: the one rule every surface uses (SPEC §6).

What a reviewer sees must be what runs. Runbook text (a step name, a command, an env
value), host names from an inventory script and command output may all hold characters
a terminal or a browser does not show as themselves:

- control characters: ``\\r`` returns to the start of the line, so ``rm -rf /x #\\r  echo
  ok`` shows as ``echo ok``; ``\\x1b[1A\\x1b[2K`` rewrites the line above (a fake "ok");
  ``\\x1b]0;TITLE\\x07`` retitles the terminal;
- bidi controls (U+202A–202E, U+2066–2069, U+200E/200F, U+061C): U+202E shows the rest
  of a line reversed;
- zero-width and other invisible characters (U+200B–200D, U+2060–2064, U+FEFF, U+00AD,
  the Hangul fillers, tag characters): a ``prod\\u200b`` guard looks like ``prod`` and
  never matches it;
- line and paragraph separators (U+2028/2029), and lone surrogates (undecodable bytes),
  which a UTF-8 terminal cannot even be sent.

``printable`` shows each as a visible escape (``\\r``, ``\\e``, ``\\x07``, ``\\u202e``);
the plan text, the apply summary and prompt, the console, ``show``, ``diff``, the report
and error messages all go through it. ``printable_json`` writes the same characters as
JSON escapes in JSON output: the same data, nothing hidden. The journal keeps the bytes.
"""

from __future__ import annotations

import re

# What a secret shows as on every surface (plans, journal, console): its stand-in, and
# the mask over its value in output.
STAND_IN = "********"

# C0 controls but \t and \n, DEL, and the C1 range (a lone 0x9b is CSI on some terminals).
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_INVISIBLE = (
    "\u00ad"  # soft hyphen
    "\u061c"  # Arabic letter mark (bidi)
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers: blank "letters"
    "\u180e"  # Mongolian vowel separator (zero width)
    "\u200b-\u200f"  # zero width space, non-joiner, joiner; LRM, RLM
    "\u2028-\u202e"  # line and paragraph separators; bidi embeddings and overrides
    "\u2060-\u2064"  # word joiner, invisible operators
    "\u2066-\u206f"  # bidi isolates; deprecated format characters
    "\ufeff"  # zero width no-break space (BOM)
    "\ufff9-\ufffb"  # interlinear annotation
    "\U000e0001\U000e0020-\U000e007f"  # tag characters ("ASCII smuggling")
    "\ud800-\udfff"  # lone surrogates (bytes decoded with surrogateescape)
)
_HIDDEN = re.compile(f"[{_CONTROLS}{_INVISIBLE}]")
_HIDDEN_OR_NEWLINE = re.compile(f"[\n{_CONTROLS}{_INVISIBLE}]")
_NAMED = {"\r": "\\r", "\x1b": "\\e", "\n": "\\n"}


def _escaped(m: re.Match[str]) -> str:
    c = m.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str, multiline: bool = True) -> str:
    """``text`` with every character that would not show as itself written as an escape.

    Tabs are kept, and newlines unless ``multiline`` is false: a field meant to be one
    line (a name, a prompt's line) must not start a line of its own that looks like
    another part of the surface.
    """
    if text.isascii() and text.isprintable():  # no control at all (nor tab or newline)
        return text
    pattern = _HIDDEN if multiline else _HIDDEN_OR_NEWLINE
    return pattern.sub(_escaped, text)


def _json_escaped(m: re.Match[str]) -> str:
    code = ord(m.group())
    if code > 0xFFFF:  # JSON escapes astral characters as a UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def printable_json(text: str) -> str:
    """JSON text (as ``json.dumps(..., ensure_ascii=False)`` writes it) with the characters
    ``printable`` escapes written as ``\\uXXXX``: they can only occur inside strings, so the
    document means exactly the same, and nothing in it is hidden from whoever reads it."""
    return _HIDDEN.sub(_json_escaped, text)
