"""The one place that turns a ``Command`` into shell text.

The seed prepended ``K=V && cmd`` unquoted and unexported, so values with spaces, ``$`` or
``;`` broke the command or ran as code. Here every value goes through ``shlex.quote`` and
is ``export``-ed inside the shell that runs the command (inside ``sudo`` too, which would
otherwise reset it), so it arrives byte-exact.
"""

from __future__ import annotations

import shlex

from runbook.command import Command

quote = shlex.quote


def script(command: Command) -> str:
    """The text the command's shell runs: exports, then the command itself."""
    if not command.env:
        return command.cmd
    exports = " ".join(f"{k}={quote(v)}" for k, v in command.env.items())
    return f"export {exports}\n{command.cmd}"


def argv(command: Command) -> list[str]:
    """The argument vector that runs the command: ``[sudo -n [-u U] --] SHELL -c SCRIPT``."""
    prefix: list[str] = []
    spec = command.spec
    if spec.become:
        prefix = ["sudo", "-n"]
        if spec.become_user:
            prefix += ["-u", spec.become_user]
        prefix.append("--")
    return [*prefix, spec.shell, "-c", script(command)]


def command_line(command: Command) -> str:
    """``argv`` as one line for a remote login shell."""
    return shlex.join(argv(command))
