"""The POSIX shell scripts a transfer runs on a host: the probe (what is at a path) and,
with ``become``, the install (write it as the become user, atomically).

They run as ``[sudo -n [-u U] --] /bin/sh -c SCRIPT sh ARGS...``: the arguments are
paths, sizes and modes (never content, secrets or env values, SPEC §6); the content
reaches ``install`` on its stdin, from a file the login user opened, so a become user
such as ``nobody`` never has to open the login user's private temp file.
"""

from __future__ import annotations

import re
import shlex

from runbook.model.command import Command
from runbook.model.files import TransferKind
from runbook.run.shell import sudo_prefix
from runbook.run.transfer.compare import Decision, Found
from runbook.run.transfer.control import TransferFailed, stderr_text

# Prints one line: "WANT_UID WANT_GID STATE [SIZE MODE UID GID SHA256]". STATE is file,
# absent, noparent, dir, link, special or unreadable; SHA256 is "-" unless the size is
# the wanted one ($2, or "-" for always). A user or group that does not exist: "nouser".
PROBE = r"""
p=$1 n=$2 o=$3 g=$4 wu=- wg=-
if [ -n "$o" ]; then wu=$(id -u -- "$o" 2>/dev/null) || { echo nouser user "$o"; exit 0; }; fi
if [ -n "$g" ]; then
  wg=$(getent group "$g" 2>/dev/null | cut -d: -f3)
  [ -n "$wg" ] || { echo nouser group "$g"; exit 0; }
fi
if [ -L "$p" ]; then echo "$wu $wg link"; exit 0; fi
if [ -d "$p" ]; then echo "$wu $wg dir"; exit 0; fi
if [ ! -e "$p" ]; then
  if [ -d "$(dirname -- "$p")" ]; then echo "$wu $wg absent"; else echo "$wu $wg noparent"; fi
  exit 0
fi
[ -f "$p" ] || { echo "$wu $wg special"; exit 0; }
[ -r "$p" ] || { echo "$wu $wg unreadable"; exit 0; }
s=$(stat -c '%s %a %u %g' -- "$p") || exit 3
h=-
if [ "$n" = - ] || [ "$n" = "${s%% *}" ]; then
  if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < "$p")
  elif command -v shasum >/dev/null 2>&1; then h=$(shasum -a 256 < "$p")
  else h=$(openssl dgst -sha256 -r < "$p"); fi || exit 3
  h=${h%% *}
fi
echo "$wu $wg file $s $h"
"""

# Reads the content on stdin into a 0600 temp file beside the destination (mktemp),
# checks its length and sha256 ($7; a src changed since the plan, or an upload cut
# short, never lands), sets owner/group (strict=0: best effort, to keep an existing
# file's) and mode, then renames it over the destination: `install` alone is not
# atomic. Any failure, or a TERM, removes the temp file.
INSTALL = r"""
d=$1 n=$2 m=$3 u=$4 g=$5 strict=$6 h=$7
t=$(mktemp "$(dirname -- "$d")/.$(basename -- "$d").runbook-XXXXXXXX") || exit 1
trap 'rm -f -- "$t"' EXIT
trap 'exit 1' HUP INT TERM
cat > "$t" || exit 1
s=$(wc -c < "$t") || exit 1
[ "$s" -eq "$n" ] || { echo "wrote $s of $n bytes: the content was cut short" >&2; exit 1; }
if command -v sha256sum >/dev/null 2>&1; then
  x=$(sha256sum < "$t") || exit 1
  [ "${x%% *}" = "$h" ] || { echo "the content's sha256 is not the planned one" >&2; exit 1; }
fi
if [ "$u" != - ] || [ "$g" != - ]; then
  ug=; [ "$u" = - ] || ug=$u; [ "$g" = - ] || ug="$ug:$g"
  if [ "$strict" = 1 ]; then chown -- "$ug" "$t" || exit 1
  else chown -- "$ug" "$t" 2>/dev/null; fi
fi
chmod -- "$m" "$t" || exit 1
mv -f -- "$t" "$d" || exit 1
trap - EXIT
"""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def probed(command: Command, path: str, rc: int, out: bytes, err: bytes) -> Found:
    """What the probe found at ``path``, from its exit status and output."""
    if rc != 0:
        who = f" as {command.spec.user}" if command.spec.become else ""
        raise TransferFailed(f"cannot inspect {path}{who}: {stderr_text(err)}")
    return parse_probe(out, path)


def parse_probe(out: bytes, path: str) -> Found:
    """The probe's line → ``Found``. Raises ``TransferFailed`` on anything else."""
    words = out.decode("utf-8", "replace").split()
    if words[:1] == ["nouser"] and len(words) >= 3:
        raise TransferFailed(f"no {words[1]} {' '.join(words[2:])!r} on the host")
    try:
        wu, wg, state, *rest = words
        found = Found(state, _id(wu), _id(wg))
        if state != "file":
            return found
        size, mode, uid, gid, sha = rest
        return Found(
            state,
            found.want_uid,
            found.want_gid,
            int(size),
            int(mode, 8),
            int(uid),
            int(gid),
            sha if _HEX64.match(sha) else None,
        )
    except ValueError:
        raise TransferFailed(f"cannot inspect {path} on the host: {out[:200]!r}") from None


def _id(word: str) -> int | None:
    return None if word == "-" else int(word)


def sh(command: Command, script: str, *args: str) -> list[str]:
    """The argv that runs ``script`` with ``args``, as the command's become user."""
    return [*sudo_prefix(command), "/bin/sh", "-c", script, "sh", *args]


def wire(argv: list[str], stdin_path: str | None = None) -> str:
    """``argv`` as one command line for an SSH exec request, stdin from a host file."""
    line = shlex.join(argv)
    return f"{line} < {shlex.quote(stdin_path)}" if stdin_path else line


def probe_argv(command: Command, path: str, size: int | None) -> list[str]:
    t = command.transfer
    assert t is not None
    owner = (t.owner or "") if t.kind == TransferKind.COPY else ""
    group = (t.group or "") if t.kind == TransferKind.COPY else ""
    return sh(command, PROBE, path, "-" if size is None else str(size), owner, group)


def install_argv(
    command: Command, dest: str, size: int, sha256: str, decision: Decision
) -> list[str]:
    """``INSTALL`` for ``dest``: the content (``size`` bytes, ``sha256``) comes on stdin."""
    d = decision
    ids = ["-" if i is None else str(i) for i in (d.uid, d.gid)]
    strict = "1" if d.strict else "0"
    return sh(command, INSTALL, dest, str(size), f"{d.mode:04o}", *ids, strict, sha256)
