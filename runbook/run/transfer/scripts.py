"""The POSIX shell scripts a transfer runs on a host: the probe (what is at a path), the
install (write a file atomically), the stage (a ``become`` upload's private copy) and the
read (a fetch's bytes).

They run as ``[sudo -n [-u U] --] /bin/sh -c SCRIPT sh ARGS...``: the arguments are
paths, sizes and modes (never content, secrets or env values, SPEC §6); content comes on
stdin.

A user who owns the directory of a path can swap names in it for symlinks at any moment
(issue 24: a root copy's temp file, ``chown``-ed by path, became ``/etc/shadow``). So no
script acts on a name twice: each opens the file once, on a descriptor, and works on
that descriptor through ``/dev/fd/N`` (``chown``, ``chmod``, ``wc``, the sha256 of
``/dev/fd/3`` reach the open file, whatever its name now is; Linux's ``/proc``). Before
it trusts a name it checks that the name still is the open file (same device and inode,
``lstat``-ed: a symlink never matches) — the shell's way of ``O_NOFOLLOW``. The install
works inside the destination's directory (``cd -P``, resolved once), creates its temp
file with ``O_EXCL`` (noclobber: never a planted file or link) and renames it with
``mv -T`` (``rename(2)``: a dest that is a symlink is replaced, never written through).
"""

from __future__ import annotations

import os
import re
import shlex

from runbook.model.command import Command
from runbook.model.files import TransferKind
from runbook.run.shell import sudo_prefix
from runbook.run.transfer.compare import Decision, Found
from runbook.run.transfer.control import PAUSE_ENV, TransferFailed, stderr_text

# Shared by every script (its variables are rb_*: a shell function's are global).
# ``same N PATH``: PATH (not followed) is the file open on fd N.
# ``pause NAME``: the test-only hook of ``control.pause`` (RUNBOOK_PAUSE is empty unless
# the controller's environment has RUNBOOK_TEST_PAUSE): if the test holds NAME, say it
# was reached and wait for its go.
_LIB = r"""
same() {
  rb_fd=$(stat -L -c %d:%i "/dev/fd/$1" 2>/dev/null) &&
  rb_at=$(stat -c %d:%i -- "$2" 2>/dev/null) && [ "$rb_fd" = "$rb_at" ]
}
pause() {
  [ -n "$RUNBOOK_PAUSE" ] && [ -e "$RUNBOOK_PAUSE/$1.hold" ] || return 0
  : > "$RUNBOOK_PAUSE/$1.reached"; rb_i=0
  while [ ! -e "$RUNBOOK_PAUSE/$1.go" ] && [ $rb_i -lt 600 ]; do sleep 0.05; rb_i=$((rb_i+1)); done
}
sha() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256
  else openssl dgst -sha256 -r; fi
}
"""

# Prints one line: "WANT_UID WANT_GID STATE [SIZE MODE UID GID SHA256]". STATE is file,
# absent, noparent, dir, link (a symlink, replaced by a copy), linkdir (a symlink to a
# directory), special, unreadable or swapped (the name changed while it was inspected);
# SIZE..SHA256 are of the open file. SHA256 is "-" unless the size is the wanted one ($2,
# or "-" for always). A user or group that does not exist: "nouser".
PROBE = r"""
p=$1 n=$2 o=$3 g=$4 wu=- wg=-
if [ -n "$o" ]; then wu=$(id -u -- "$o" 2>/dev/null) || { echo nouser user "$o"; exit 0; }; fi
if [ -n "$g" ]; then
  wg=$(getent group "$g" 2>/dev/null | cut -d: -f3)
  [ -n "$wg" ] || { echo nouser group "$g"; exit 0; }
fi
if [ -L "$p" ]; then
  if [ -d "$p" ]; then echo "$wu $wg linkdir"; else echo "$wu $wg link"; fi; exit 0
fi
if [ -d "$p" ]; then echo "$wu $wg dir"; exit 0; fi
if [ ! -e "$p" ]; then
  if [ -d "$(dirname -- "$p")" ]; then echo "$wu $wg absent"; else echo "$wu $wg noparent"; fi
  exit 0
fi
[ -f "$p" ] || { echo "$wu $wg special"; exit 0; }
[ -r "$p" ] || { echo "$wu $wg unreadable"; exit 0; }
{ command exec 3< "$p"; } 2>/dev/null || { echo "$wu $wg unreadable"; exit 0; }
{ [ -f /dev/fd/3 ] && same 3 "$p"; } || { echo "$wu $wg swapped"; exit 0; }
s=$(stat -L -c '%s %a %u %g' /dev/fd/3) || exit 3
h=-
if [ "$n" = - ] || [ "$n" = "${s%% *}" ]; then h=$(sha <&3) || exit 3; h=${h%% *}; fi
echo "$wu $wg file $s $h"
"""

# Reads the content on stdin into a new 0600 temp file beside the destination, checks
# its length and sha256 ($7; a src changed since the plan, or an upload cut short,
# never lands), sets owner/group (strict=0: best effort, to keep an existing file's) and
# mode on the open file, checks the temp name is still that file, then renames it over
# the destination: `install` alone is not atomic. Any failure, or a TERM, removes it.
INSTALL = r"""
d=$1 n=$2 m=$3 u=$4 g=$5 strict=$6 h=$7
cd -P -- "$(dirname -- "$d")" || exit 1
b=$(basename -- "$d")
set -C; umask 077
t=$(mktemp -u ".$b.runbook-XXXXXXXX") && command exec 3> "$t" || {
  echo "cannot create a temp file beside $d" >&2; exit 1; }
set +C
trap 'rm -f -- "$t"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat >&3 || exit 1
pause install.written
s=$(wc -c < /dev/fd/3) || exit 1
[ "$s" -eq "$n" ] || { echo "wrote $s of $n bytes: the content was cut short" >&2; exit 1; }
x=$(sha < /dev/fd/3) || { echo "no sha256sum, shasum or openssl here" >&2; exit 1; }
[ "${x%% *}" = "$h" ] || { echo "the content's sha256 is not the planned one" >&2; exit 1; }
if [ "$u" != - ] || [ "$g" != - ]; then
  ug=; [ "$u" = - ] || ug=$u; [ "$g" = - ] || ug="$ug:$g"
  if [ "$strict" = 1 ]; then chown -- "$ug" /dev/fd/3 || exit 1
  else chown -- "$ug" /dev/fd/3 2>/dev/null; fi
fi
chmod -- "$m" /dev/fd/3 || exit 1
pause install.rename
same 3 "$t" || { echo "the temp file beside $d was replaced during the copy" >&2; exit 1; }
mv -f -T -- "$t" "$b" || exit 1
trap - EXIT
"""

# A become upload, as the login user: the content from stdin into a private file that
# loses its name at once (0600, O_EXCL, then unlinked: the kernel frees it whenever this
# shell and the install end, even if the controller died mid-copy), then the install
# ("$@", under sudo) reads it from a descriptor this shell opened: the become user never
# opens the login user's file, and no other user can reach it.
STAGE = r"""
umask 077; set -C; p=
for dir in /var/tmp /tmp "$HOME"; do
  [ -d "$dir" ] || continue
  p=$(mktemp -u "$dir/.runbook-XXXXXXXXXXXX") && { command exec 3> "$p"; } 2>/dev/null && break
  p=
done
[ -n "$p" ] || { echo "no directory for a private copy of the content" >&2; exit 1; }
command exec 4< /dev/fd/3 || { rm -f -- "$p"; exit 1; }
rm -f -- "$p"
pause stage.unlinked
cat >&3 || exit 1
exec 3>&-
exec "$@" <&4 4<&-
"""

# A fetch's bytes: src opened once; refused unless the name still is that open file and
# it is a regular file (a symlink or /dev/zero swapped in after the probe); never more
# than the size the probe saw ($2; the controller checks size and sha256 again).
READ = r"""
p=$1 n=$2
command exec 3< "$p" || exit 1
pause read.opened
{ [ -f /dev/fd/3 ] && same 3 "$p"; } || {
  echo "$p was replaced (by a link or a special file) after it was inspected" >&2; exit 1; }
exec head -c "$n" <&3
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
    return [*sudo_prefix(command), *plain(script, *args)]


def plain(script: str, *args: str) -> list[str]:
    """The argv that runs ``script`` with ``args`` as whoever runs it."""
    hook = os.environ.get(PAUSE_ENV, "")
    head = f"RUNBOOK_PAUSE={shlex.quote(hook)}\n{_LIB}"
    return ["/bin/sh", "-c", head + script, "sh", *args]


def wire(argv: list[str]) -> str:
    """``argv`` as one command line for an SSH exec request."""
    return shlex.join(argv)


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


def staged(install: list[str]) -> list[str]:
    """``install`` (a become install) run by the login user's ``STAGE``, which keeps the
    content in a nameless private file while ``sudo`` installs it."""
    return plain(STAGE, *install)


def read_argv(command: Command, path: str, size: int) -> list[str]:
    """``READ``: at most ``size`` bytes of ``path``, if it still is the file probed."""
    return sh(command, READ, path, str(size))
