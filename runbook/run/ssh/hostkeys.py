"""Host-key verification against OpenSSH ``known_hosts`` files.

paramiko's ``HostKeys`` forgets which file and line an entry came from, and its
``AutoAddPolicy`` accepts any key without a word. An operator facing a changed key needs
the file:line to inspect, so this module reads the files itself (hashed names, wildcard
patterns, ``@revoked``; ``@cert-authority`` lines are ignored) and decides per policy:

- ``strict``: the key must already be known.
- ``accept-new``: an unknown key is appended to the user known_hosts file; a changed one
  is refused.
- ``off``: nothing is refused; every key that was not verified produces a warning.

A changed key is an error under ``strict`` and ``accept-new``. Under ``off`` it is a loud
warning instead, like OpenSSH's ``StrictHostKeyChecking=no``: ``off`` exists for
throw-away machines whose addresses get reused, where refusing would make it useless.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko

from runbook.options import HostKeyPolicy

# paramiko offers RSA keys only with SHA-2 signatures; known_hosts calls them ssh-rsa.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


class HostKeyError(Exception):
    """The server's host key was refused. Never retried: a retry cannot fix it."""


def known_hosts_name(address: str, port: int) -> str:
    """The name OpenSSH files a host under: ``addr`` on port 22, ``[addr]:port`` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


@dataclass(frozen=True)
class Entry:
    """One known_hosts line, remembering where it came from."""

    path: str
    line: int
    patterns: tuple[str, ...]
    key_type: str
    blob: str
    marker: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def matches(self, name: str) -> bool:
        """OpenSSH semantics: some pattern matches and no negated pattern does."""
        hit = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if negated:
                pattern = pattern[1:]
            if _pattern_matches(pattern, name):
                if negated:
                    return False
                hit = True
        return hit


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            return paramiko.HostKeys.hash_host(name, pattern) == pattern
        except (ValueError, AssertionError, IndexError):  # malformed hash: not a match
            return False
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == name.lower()
    # Not fnmatch: "[addr]:port" brackets are literal in known_hosts.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE) is not None


def parse(path: str, text: str) -> list[Entry]:
    """Entries of one known_hosts file; lines that cannot be parsed are skipped, as ssh does."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = None
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            marker = marker[1:]
            line = line.strip()
        fields = line.split()
        if len(fields) < 3:
            continue
        entries.append(
            Entry(path, number, tuple(fields[0].split(",")), fields[1], fields[2], marker)
        )
    return entries


class HostKeyVerifier:
    """Checks server keys for every connection of a run; caches the files it reads.

    ``warn`` receives operator-facing messages for keys that were accepted without proof
    (``off``) or recorded (``accept-new``).
    """

    def __init__(self, policy: HostKeyPolicy, warn: Callable[[str], None]) -> None:
        self.policy = HostKeyPolicy(policy)  # ValueError for anything else
        self._warn = warn
        self._lock = threading.Lock()
        self._cache: dict[str, list[Entry]] = {}

    def _entries(self, path: str) -> list[Entry]:
        with self._lock:
            if path not in self._cache:
                try:
                    with open(path, encoding="utf-8", errors="replace") as f:
                        self._cache[path] = parse(path, f.read())
                except FileNotFoundError:
                    self._cache[path] = []
                except OSError as exc:
                    raise HostKeyError(f"cannot read known_hosts file {path}: {exc}") from exc
            return self._cache[path]

    def lookup(self, name: str, files: Sequence[str]) -> list[Entry]:
        return [e for path in files for e in self._entries(path) if e.matches(name)]

    def preferred_algorithms(self, name: str, files: Sequence[str]) -> list[str]:
        """Host-key algorithms to ask for first: the types already known for ``name``.

        Without this the server may present an ed25519 key while known_hosts holds its
        RSA key, and a perfectly known host would look unknown (OpenSSH orders its
        HostKeyAlgorithms the same way).
        """
        names: list[str] = []
        for entry in self.lookup(name, files):
            if entry.marker is None:
                for algo in _ALGORITHMS.get(entry.key_type, (entry.key_type,)):
                    if algo not in names:
                        names.append(algo)
        return names

    def verify(
        self,
        label: str,
        name: str,
        key: paramiko.PKey,
        files: Sequence[str],
        port: int,
        address: str,
    ) -> None:
        """Accept ``key`` for ``name`` or raise ``HostKeyError``; ``files[0]`` is writable."""
        key_type, blob, fingerprint = key.get_name(), key.get_base64(), key.fingerprint
        shown = f"{key_type} {fingerprint}"
        entries = self.lookup(name, files)
        for entry in entries:
            if entry.marker == "revoked" and entry.blob == blob:
                raise HostKeyError(
                    f"host key for {label} ({name}, {shown}) is marked @revoked at {entry.where}"
                )
        known = [e for e in entries if e.marker is None]
        if any(e.blob == blob for e in known):
            return
        user_file = files[0]
        if known:
            where = ", ".join(f"{e.where} ({e.key_type})" for e in known)
            message = (
                f"host key for {label} ({name}) has CHANGED: the server offered {shown}, "
                f"known_hosts has {where}. This may be a man-in-the-middle attack; if the "
                f"change is expected, remove the old entry with "
                f"`ssh-keygen -R '{name}' -f {known[0].path}`"
            )
            if self.policy == HostKeyPolicy.OFF:
                self._warn(f"{message}; connecting anyway (--host-key-policy off)")
                return
            raise HostKeyError(message)
        if self.policy == HostKeyPolicy.STRICT:
            raise HostKeyError(
                f"host key for {label} ({name}, {shown}) not in {user_file}; add it with "
                f"`ssh-keyscan -p {port} {address} >> {user_file}` or use "
                f"--host-key-policy accept-new"
            )
        if self.policy == HostKeyPolicy.ACCEPT_NEW:
            self._record(user_file, name, key)
            self._warn(f"added {shown} host key for {label} ({name}) to {user_file}")
            return
        self._warn(f"host key for {label} ({name}, {shown}) not verified (--host-key-policy off)")

    def _record(self, path: str, name: str, key: paramiko.PKey) -> None:
        """Append one line, unless another thread or process just did; O_APPEND keeps
        concurrent writers' lines whole."""
        line = f"{name} {key.get_name()} {key.get_base64()}\n".encode()
        with self._lock:
            self._cache.pop(path, None)
            try:
                directory = os.path.dirname(path)
                if directory:
                    os.makedirs(directory, mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "r+b") as f:
                    text = f.read()
                    entries = parse(path, text.decode("utf-8", errors="replace"))
                    if any(e.matches(name) and e.blob == key.get_base64() for e in entries):
                        return
                    if text and not text.endswith(b"\n"):
                        line = b"\n" + line
                    f.write(line)
            except OSError as exc:
                raise HostKeyError(
                    f"cannot record the host key for {name} in {path}: {exc}"
                ) from exc
