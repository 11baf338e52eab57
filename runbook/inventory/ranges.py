"""Host names as inventories write them: ranges (``db[01:10]``, ``node-[a:f]``) and ports.

Ansible expands ``web[1:3]`` into three hosts and reads ``web1:2222`` as a host with a
port; INI and YAML inventories both name hosts this way, so both use this module.
"""

from __future__ import annotations

import re
import string

_MAX_RANGE = 100_000  # hosts from one pattern; guards against `h[0:99999999]`
_BRACKETED_IPV6 = re.compile(r"^\[([0-9A-Fa-f:.]+(?:%[\w.]+)?)\](?::(\d*))?$")


class PatternError(Exception):
    """A host pattern is malformed; ``offset`` is relative to the pattern's start."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def _split_port(pattern: str) -> tuple[str, int | None]:
    """``web1:2222`` -> (``web1``, 2222); IPv6 literals and ranges keep their colons."""
    m = _BRACKETED_IPV6.match(pattern)
    if m and ("::" in m.group(1) or m.group(1).count(":") >= 3):
        return m.group(1), _port(m.group(2), pattern) if m.group(2) is not None else None
    depth, colons = 0, []
    for i, ch in enumerate(pattern):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == ":" and depth == 0:
            colons.append(i)
    if not colons:
        return pattern, None
    if len(colons) > 1:
        return pattern, None  # a bare IPv6 address such as fe80::1
    i = colons[0]
    return pattern[:i], _port(pattern[i + 1 :], pattern, i + 1)


def _port(text: str, pattern: str, offset: int = 0) -> int:
    if not text:
        raise PatternError(
            f"host {pattern!r} ends in ':'; write a port after it or remove it", offset - 1
        )
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise PatternError(f"port {text!r} in {pattern!r} is not a number 1-65535", offset)
    return int(text)


def _expand(pattern: str, base: int = 0) -> list[str]:
    """Expand Ansible ranges: ``db[01:10]``, ``node-[a:f]``, ``h[1:10:2]``, several per name."""
    start = pattern.find("[")
    if start < 0:
        if "]" in pattern:
            raise PatternError("']' without a matching '['", base + pattern.index("]"))
        return [pattern]
    end = pattern.find("]", start)
    if end < 0:
        raise PatternError("'[' without a matching ']'", base + start)
    head, spec, tail = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    where = base + start
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise PatternError(f"host range [{spec}] must be [begin:end] or [begin:end:step]", where)
    first, last = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not last:
        raise PatternError(f"host range [{spec}] has no end", where)
    if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
        raise PatternError(f"host range [{spec}]: step must be a positive integer", where)
    step = int(step_text)
    letters = string.ascii_letters
    if len(first) == len(last) == 1 and first in letters and last in letters:
        lo, hi = letters.index(first), letters.index(last)
        if lo > hi:
            raise PatternError(
                f"host range [{spec}] is empty: {first!r} comes after {last!r}", where
            )
        items = list(letters[lo : hi + 1 : step])
    elif first.isascii() and first.isdigit() and last.isascii() and last.isdigit():
        lo, hi = int(first), int(last)
        if lo > hi:
            raise PatternError(f"host range [{spec}] is empty: {lo} > {hi}", where)
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        if width and len(last) != width:
            raise PatternError(
                f"zero-padded host range [{spec}] needs begin and end of the same width", where
            )
        if (hi - lo) // step + 1 > _MAX_RANGE:
            raise PatternError(f"host range [{spec}] has more than {_MAX_RANGE} hosts", where)
        items = [str(n).zfill(width) for n in range(lo, hi + 1, step)]
    else:
        raise PatternError(f"host range [{spec}] needs two numbers or two single letters", where)
    names: list[str] = []
    for item in items:
        # Only the tail can hold further ranges; offsets there shift by the expansion.
        names.extend(head + item + t for t in _expand(tail, base + end + 1))
        if len(names) > _MAX_RANGE:
            raise PatternError(f"host pattern expands to more than {_MAX_RANGE} hosts", where)
    return names


def expand_host(pattern: str) -> tuple[list[str], int | None]:
    """Host pattern -> (names, port or None), raising ``PatternError``."""
    name, port = _split_port(pattern)
    if not name:
        raise PatternError("empty host name")
    if name.strip() == "---":
        raise PatternError("'---' is a YAML document marker; name a YAML inventory *.yml")
    if any(ch.isspace() for ch in name):
        raise PatternError(f"host name {name!r} contains whitespace; write one host per name")
    return _expand(name), port
