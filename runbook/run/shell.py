"""The one place that turns a ``Command`` into what a shell runs, and how it gets there.

The seed prepended ``K=V && cmd`` unquoted and unexported, so values with spaces, ``$`` or
``;`` broke the command or ran as code. Here every value goes through ``shlex.quote`` and
is ``export``-ed inside the shell that runs the command (inside ``sudo`` too, which would
otherwise reset it), so it arrives byte-exact.

Nothing of the script is on a command line (any user can read ``/proc/*/cmdline``).
Locally the script is a private in-memory file (memfd) given to the shell as stdin; a
fixed ``-c`` text moves it to fd 3, points stdin at ``/dev/null`` and sources it, so no
reader process runs (``sourced``). Under ``sudo``, and over SSH, the script arrives on a
pipe: the shell reads all of it, points its stdin at ``/dev/null`` and ``eval``s it
(``invocation``); bash with its ``read`` builtin (~0.4 ms), other shells with ``head -c``
(a fork, ~2.5 ms measured). Either way the command's own stdin is empty (SPEC §8).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from runbook.model.command import Command

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
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in command.env.items())
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


# The script is a private file on stdin: moved to fd 3 (POSIX shells redirect only fds
# 0-9), stdin pointed at /dev/null, the file sourced; the script's first line closes fd 3.
SOURCED = "exec 3<&0 </dev/null; . /dev/fd/3"


def sourced(command: Command) -> Invocation:
    """``SHELL -c SOURCED`` with the script in a private file (a memfd: 0600, never on
    disk) as stdin: no reader process at all (``head`` costs ~2 ms a command under dash).
    Not under ``sudo``, which needs the pipe form (``invocation``)."""
    text = f"exec 3<&-\n{script(command)}".encode()
    return Invocation([command.spec.shell, "-c", SOURCED], text)


def invocation(command: Command) -> Invocation:
    """``[sudo -n [-u U] --] SHELL -c READER`` with the script for its stdin."""
    text = script(command).encode("utf-8")
    shell = command.spec.shell
    code, terminator = reader(shell, len(text))
    return Invocation([*sudo_prefix(command), shell, "-c", code], text + terminator)
