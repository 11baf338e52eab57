"""Host names, addresses and users are safe words (SPEC §6).

A host name reaches places that read it as more than a name: the operator's
``ProxyCommand nc %h %p`` runs it through a shell on the controller (a name with spaces
and a ``;`` runs a command there: CVE-2023-51385, which OpenSSH 9.6 closed by refusing
such names), ``fetch`` dests such as ``logs/{{ host.name }}.log`` make it a path (a name
``../../x`` writes outside the runbook's directory), an inventory script gets it as an
argument (``--host NAME``: a leading ``-`` is an option), and every surface shows it.

So an inventory — a file, a script, the runbook's own ``hosts:`` — that produces a host
name, address, user or ProxyJump host holding whitespace, a quote, a shell
metacharacter or ``/``, starting with ``-``, or holding a character ``printable`` would
escape (a control, bidi or zero-width character), is an input error naming it.
"""

from __future__ import annotations

from runbook.errors import InventoryError, Position
from runbook.text import printable

# OpenSSH's valid_hostname() set, the glob and history characters a shell also reads,
# and '/' (a path).
METACHARACTERS = frozenset("'\"`$\\;&|<>(){}[]*?!#~^/")


def unsafe(word: str) -> str | None:
    """Why ``word`` is not a safe host name, address or user; None when it is."""
    if not word:
        return "is empty"
    if word.startswith("-"):
        return "starts with '-' (ssh and scripts would read an option)"
    for ch in word:
        if ch.isspace():
            return "holds whitespace"
        if ch in METACHARACTERS:
            return f"holds {ch!r}"
        if printable(ch, multiline=False) != ch:
            return f"holds {printable(ch)}, a control or invisible character"
    return None


def check_word(kind: str, word: str, position: Position | None, host: str | None = None) -> None:
    """Raise ``InventoryError`` naming ``word`` (``kind``: "host name", "address" ...)
    unless it is a safe word."""
    why = unsafe(word)
    if why is None:
        return
    raise InventoryError(
        f"{kind} {word!r} {why}: host names, addresses and users may not hold whitespace, "
        "quotes, shell metacharacters or '/', nor start with '-' (OpenSSH refuses such "
        "names too: CVE-2023-51385)",
        position,
        host=host,
    )
