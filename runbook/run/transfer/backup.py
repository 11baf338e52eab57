"""``copy: {backup: true}``: the file a copy replaces is kept beside it, as
``DEST.YYYYmmddTHHMMSS~`` (the host's clock), and its path is the result's ``backup``.

One script for every transport, run as the copy's user (under ``sudo`` with ``become``)
just before the new content is written, and only when a regular file is there to be
replaced: a hard link (the old inode, its owner and mode, no bytes copied; the copy's
rename then gives ``dest`` a new inode), or where a link is refused (another
filesystem, ``fs.protected_hardlinks`` for a file of another user) a private copy made
through an ``O_EXCL`` descriptor (``set -C``, umask 077: never through a planted file).
A backup made in the same second as another of the same file gets ``.N`` before the
``~`` rather than replace it.
"""

from __future__ import annotations

from collections.abc import Callable

from runbook.model.command import Command
from runbook.run.transfer.compare import Found
from runbook.run.transfer.control import TransferFailed, stderr_text
from runbook.run.transfer.scripts import sh

# Prints the backup's path; nothing when there is no regular file to keep.
BACKUP = r"""
d=$1
[ -f "$d" ] && [ ! -L "$d" ] || exit 0
s=$(date +%Y%m%dT%H%M%S) || exit 1
b="$d.$s~" n=0
while [ -e "$b" ] || [ -L "$b" ]; do n=$((n + 1)); b="$d.$s.$n~"; done
if ! ln -P -- "$d" "$b" 2>/dev/null; then
  set -C; umask 077
  command exec 3> "$b" || exit 1
  cat -- "$d" >&3 || { rm -f -- "$b"; exit 1; }
fi
printf '%s\n' "$b"
"""

RunScript = Callable[[list[str]], tuple[int, bytes, bytes]]


def keep_backup(command: Command, path: str, found: Found, run: RunScript) -> str | None:
    """Keep the file at ``path`` (the copy's dest, ``found`` by its probe) that the copy
    is about to replace: the backup's path, "" when nothing is replaced, ``None`` when
    the copy keeps no backups. ``run(argv)`` runs a script where the copy writes and
    returns (exit status, stdout, stderr). Raises ``TransferFailed``."""
    tr = command.transfer
    assert tr is not None
    if not tr.backup:
        return None
    if not found.is_file:
        return ""
    rc, out, err = run(sh(command, BACKUP, path))
    if rc != 0:
        raise TransferFailed(f"cannot keep a backup of {tr.dest}: {stderr_text(err)}")
    kept = out.decode("utf-8", "replace").removesuffix("\n")
    # As the plan names dest (relative to the runbook on the controller), so its backup.
    return tr.dest + kept[len(path) :] if kept.startswith(path) else kept
