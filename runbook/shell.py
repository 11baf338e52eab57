"""The one place that turns a ``Command`` into what a shell runs, and how it gets there.

The seed prepended ``K=V && cmd`` unquoted and unexported, so values with spaces, ``$`` or
``;`` broke the command or ran as code. Here every value goes through ``shlex.quote`` and
is ``export``-ed inside the shell that runs the command (inside ``sudo`` too, which would
otherwise reset it), so it arrives byte-exact.

Nothing of the script is on a command line (any user can read ``/proc/*/cmdline``): the
shell is started with a small fixed reader and the script arrives on its stdin; the shell
reads all of it, points its stdin at ``/dev/null`` and ``eval``s it, so the command's own
stdin is empty (SPEC §8). bash reads it with its ``read`` builtin (~0.4 ms); other shells
with ``head -c`` (a fork, ~2.5 ms measured), as does bash for large scripts, which its
byte-at-a-time ``read`` would take long over.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from runbook.command import Command

quote = shlex.quote

BUILTIN_READ_SHELLS = frozenset({"bash"})
BUILTIN_READ_MAX = 16 * 1024  # bytes: above this, head -c is faster than bash's read


@dataclass(frozen=True)
class Invocation:
    """How a command is started: an argv that holds no part of the script, and the bytes to
    write to its stdin (the script, plus a terminator for the reader)."""

    argv: list[str]
    stdin: bytes


def script(command: Command) -> str:
    """The text the command's shell runs: exports, then the command itself."""
    if not command.env:
        return command.cmd
    exports = " ".join(f"{k}={quote(v)}" for k, v in command.env.items())
    return f"export {exports}\n{command.cmd}"


def reader(shell: str, length: int) -> tuple[str, bytes]:
    """The ``-c`` text that reads a script of ``length`` bytes from stdin and runs it, and
    what must follow the script on stdin."""
    if os.path.basename(shell) in BUILTIN_READ_SHELLS and length <= BUILTIN_READ_MAX:
        return "IFS= read -r -d '' s; exec </dev/null; eval \"$s\"", b"\0"
    return f's=$(head -c {length}); exec </dev/null; eval "$s"', b""


def sudo_prefix(command: Command) -> list[str]:
    spec = command.spec
    if not spec.become:
        return []
    prefix = ["sudo", "-n"]
    if spec.become_user:
        prefix += ["-u", spec.become_user]
    return [*prefix, "--"]


def invocation(command: Command) -> Invocation:
    """``[sudo -n [-u U] --] SHELL -c READER`` with the script for its stdin."""
    text = script(command).encode("utf-8")
    shell = command.spec.shell
    code, terminator = reader(shell, len(text))
    return Invocation([*sudo_prefix(command), shell, "-c", code], text + terminator)
