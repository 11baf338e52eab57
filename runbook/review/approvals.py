"""Signed approvals of a saved plan (SPEC §12), with OpenSSH's own tool.

``runbook approve PLAN.json --key KEY`` signs ``approval_message(PLAN.json)`` — the plan
file's exact bytes — with ``ssh-keygen -Y sign -n runbook-plan`` and appends the armored
signature to ``PLAN.json.sig`` (each approver appends one). ``apply PLAN.json
--require-approvals N --allowed-signers FILE`` reads the plan's bytes once, checks every
signature with ``ssh-keygen -Y find-principals`` (whose key is it, by the allowed_signers
file git uses) and ``-Y verify`` (over exactly these bytes, in this namespace), and runs
those same bytes only when N distinct principals signed them. Any change to the file, a
single byte, breaks every signature. Each signature counts once, for its key's first
principal; a principal counts once however many of its keys signed.

A signature can be checked by hand too (one block of the .sig file per check)::

    ssh-keygen -Y verify -f allowed_signers -I alice@example.com -n runbook-plan \\
        -s one-signature.sig < PLAN.json
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runbook.errors import InputError, Position, UsageError
from runbook.model.approval import Approval, Approvals
from runbook.plan.saved import read_saved_plan

NAMESPACE = "runbook-plan"
BEGIN, END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
KEYGEN_TIMEOUT = 60.0  # seconds: a passphrase prompt on a terminal is answered by then


def approval_message(data: bytes) -> bytes:
    """What an approval signs: the plan file's exact bytes (not a re-serialisation:
    what is verified is what is parsed and run, byte for byte)."""
    return data


def signatures_file(plan_file: str) -> str:
    return plan_file + ".sig"


def bytes_digest(data: bytes) -> str:
    """The SHA-256 of a plan file's exact bytes: what an approval signs and records."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- signing -------------------------------------------------------------------------------


def approve(plan_file: str, key: str) -> str:
    """Sign ``plan_file`` with ``key`` (a private key file, or a public one whose private
    half is in ssh-agent) and append the signature to ``plan_file.sig``. Returns the
    signing key's ``TYPE SHA256:...``. Raises ``InputError``."""
    data = read_plan(plan_file)

    if read_saved_plan(plan_file, data) is None:
        raise UsageError(
            f"{plan_file} is not a saved plan (runbook plan --out PLAN.json makes one)"
        )
    done = _keygen(["-Y", "sign", "-f", key, "-n", NAMESPACE], approval_message(data))
    if done.returncode != 0:
        raise InputError(f"ssh-keygen could not sign with {key}: {_why(done)}", Position(key))
    signature = done.stdout.decode("ascii", "replace")
    blocks = list(_blocks(signature))
    if len(blocks) != 1:
        raise InputError(f"ssh-keygen gave no signature for {key}: {_why(done)}")
    sig_file = signatures_file(plan_file)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW  # never through a link
    try:
        fd = os.open(sig_file, flags, 0o644)
        with os.fdopen(fd, "a", encoding="ascii") as f:
            f.write(blocks[0] + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {sig_file}: {exc.strerror}", Position(sig_file)) from None
    return key_of(blocks[0])


# -- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """One block of a .sig file, checked."""

    index: int  # 1-based, in the file
    key: str  # TYPE SHA256:...
    principals: tuple[str, ...]  # whose key it is, by allowed_signers (empty: nobody's)
    valid: bool  # verifies over the plan's bytes (for a principal, or alone)

    @property
    def principal(self) -> str | None:
        return self.principals[0] if self.principals and self.valid else None

    def problem(self, allowed: str | None) -> str | None:
        if allowed is not None and not self.principals:
            return f"its key is not in {allowed}"
        if not self.valid:
            return (
                "it does not verify over this plan (it signs another plan, or this plan "
                "changed since)"
            )
        return None


def check_signatures(data: bytes, plan_file: str, allowed: str | None) -> list[Signature]:
    """Every signature of ``plan_file.sig`` checked over ``data``; by ``allowed`` (an
    allowed_signers file) when given, else only for validity (``check-novalidate``)."""
    sig_file = signatures_file(plan_file)
    try:
        with open(sig_file, encoding="ascii", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"cannot read {sig_file}: {exc.strerror}", Position(sig_file)) from None
    out = []
    with _scratch() as scratch:
        for i, block in enumerate(_blocks(text), 1):
            path = os.path.join(scratch, f"{i}.sig")
            with open(path, "w", encoding="ascii") as f:
                f.write(block + "\n")
            out.append(_check(i, block, path, data, allowed))
    return out


def verified(data: bytes, plan_file: str, required: int, allowed: str) -> Approvals:
    """The approvals of the plan whose bytes are ``data``. Raises ``InputError`` (exit 2:
    nothing is run) unless ``required`` distinct principals of ``allowed`` signed them,
    saying what each signature lacks."""
    if not os.path.isfile(allowed):
        raise InputError(f"--allowed-signers {allowed}: no such file", Position(allowed))
    signatures = check_signatures(data, plan_file, allowed)
    approvers: dict[str, Approval] = {}
    for s in signatures:
        if s.principal is not None and s.principal not in approvers:
            approvers[s.principal] = Approval(s.principal, s.key)
    if len(approvers) >= required:
        return Approvals(plan_file, bytes_digest(data), required, tuple(approvers.values()))
    sig_file = signatures_file(plan_file)
    got = ", ".join(approvers) or "none"
    first = InputError(
        f"not approved: {len(approvers)} of {required} required approvals by distinct "
        f"principals of {allowed} ({got}); nothing was run",
        Position(plan_file),
    )
    if not signatures:
        first.others.append(
            InputError(
                f"no signatures: runbook approve {plan_file} --key KEY adds one", Position(sig_file)
            )
        )
    for s in signatures:
        why = s.problem(allowed)
        if why is not None:
            first.others.append(
                InputError(f"signature {s.index} ({s.key}): {why}", Position(sig_file))
            )
        elif s.principal is not None and approvers[s.principal].key != s.key:
            first.others.append(
                InputError(
                    f"signature {s.index} ({s.key}): {s.principal} approved already (another key)",
                    Position(sig_file),
                )
            )
    raise first


def _check(index: int, block: str, path: str, data: bytes, allowed: str | None) -> Signature:
    key = key_of(block)
    message = approval_message(data)
    if allowed is None:
        done = _keygen(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", path], message)
        return Signature(index, key, (), done.returncode == 0)
    found = _keygen(["-Y", "find-principals", "-s", path, "-f", allowed], b"")
    principals = (
        tuple(p for p in found.stdout.decode("utf-8", "replace").splitlines() if p.strip())
        if found.returncode == 0
        else ()
    )
    for principal in principals:
        args = ["-Y", "verify", "-f", allowed, "-I", principal, "-n", NAMESPACE, "-s", path]
        if _keygen(args, message).returncode == 0:
            return Signature(
                index, key, (principal, *(p for p in principals if p != principal)), True
            )
    return Signature(index, key, principals, False)


def key_of(block: str) -> str:
    """``ED25519 SHA256:...`` of the key inside an armored SSH signature (its public key
    is the first field after the magic and version), as ``ssh-keygen -l`` shows it."""
    try:
        blob = base64.b64decode("".join(block.splitlines()[1:-1]))
        if blob[:6] != b"SSHSIG":
            raise ValueError("not an SSH signature")
        (length,) = struct.unpack(">I", blob[10:14])
        public = blob[14 : 14 + length]
        (name_length,) = struct.unpack(">I", public[:4])
        kind = public[4 : 4 + name_length].decode("ascii")
    except (ValueError, struct.error, UnicodeDecodeError):
        return "unreadable signature"
    digest = base64.b64encode(hashlib.sha256(public).digest()).decode().rstrip("=")
    return f"{_kind(kind)} SHA256:{digest}"


def _kind(name: str) -> str:
    """``ssh-ed25519`` → ``ED25519``, ``sk-ssh-ed25519@openssh.com`` → ``ED25519-SK``."""
    base = name.split("@")[0]
    sk = base.startswith("sk-")
    base = base.removeprefix("sk-").removeprefix("ssh-")
    base = "ECDSA" if base.startswith("ecdsa") else base.upper()
    return base + ("-SK" if sk else "")


def _blocks(text: str) -> Iterator[str]:
    """The armored signatures in ``text``, in order."""
    lines: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line == BEGIN:
            lines = [line]
        elif lines is not None:
            lines.append(line)
            if line == END:
                yield "\n".join(lines)
                lines = None


def _keygen(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise InputError("ssh-keygen (OpenSSH) is not installed: approvals need it")
    try:
        return subprocess.run(
            [keygen, *args], input=stdin, capture_output=True, timeout=KEYGEN_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"ssh-keygen {args[1]} did not finish in {KEYGEN_TIMEOUT:g}s") from None


def _why(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = done.stderr.decode("utf-8", "replace").splitlines()
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("Signing data on")]
    return "; ".join(lines) or f"exit code {done.returncode}"


def read_plan(path: str) -> bytes:
    """A plan file's bytes, read once: verified, then parsed from the same bytes."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read plan: {exc.strerror}", Position(path)) from None


@contextmanager
def _scratch() -> Iterator[str]:
    """A private directory for the signature blocks ssh-keygen reads from files."""
    path = tempfile.mkdtemp(prefix="runbook-approvals-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
