"""Secrets: read at plan time, used in commands, never shown.

``Masker`` is applied to every text that leaves the process (plan, console, events,
journal) — including a command's own stdout/stderr, since commands echo their arguments.
A value is masked as written, as ``quote`` renders it (so ``{{ pw | quote }}`` does not
leak a password containing a quote), as Python's repr and JSON escape it (error messages
quote values), and a multi-line value also line by line.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import InputError, Position
from runbook.load.vault import Keyring
from runbook.model.runbook import SecretSpec
from runbook.templating.lookups import Lookups, PipeFailed, SecretSource, run_pipe
from runbook.text import STAND_IN

SecretSources = dict[str, dict[str, str]]

MASK = STAND_IN  # a secret in output reads as it reads in the plan
MIN_LINE = 8


def resolve_secrets(
    specs: Iterable[SecretSpec], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Read every secret; a missing one is an input error (exit 2, nothing runs)."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for spec in specs:
        if spec.env is not None:
            if spec.env not in environ:
                raise InputError(
                    f"secret {spec.name!r}: environment variable {spec.env} is not set",
                    spec.position,
                )
            values[spec.name] = environ[spec.env]
        elif spec.pipe is not None:
            values[spec.name] = _pipe(spec)
        else:
            assert spec.file is not None
            try:
                with open(spec.file, encoding="utf-8") as f:
                    values[spec.name] = f.read().rstrip("\n")
            except (OSError, UnicodeDecodeError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                raise InputError(
                    f"secret {spec.name!r}: cannot read {spec.file}: {why}", spec.position
                ) from None
        if not values[spec.name]:
            raise InputError(f"secret {spec.name!r} is empty", spec.position)
        if "\0" in values[spec.name]:
            raise InputError(f"secret {spec.name!r} contains a NUL byte", spec.position)
    return values


def _pipe(spec: SecretSpec) -> str:
    """A ``{pipe: command}`` secret: the command's stdout without its trailing newlines."""
    assert spec.pipe is not None
    try:
        return run_pipe(spec.pipe, spec.cwd)
    except PipeFailed as exc:
        raise InputError(f"secret {spec.name!r}: `{spec.pipe}` {exc}", spec.position) from None


class Masker:
    """Callable that replaces every secret value in a text with ``********``.

    Command output is masked (commands echo their arguments; a registered value can hold
    a secret). A value is matched whole, as ``quote`` renders it and escaped as repr and
    JSON write it inside quotes (``_forms``); a multi-line secret
    (a key, a certificate) also line by line, for each line of 8 or more characters — but
    never a PEM armour line (``-----BEGIN ... KEY-----``) or an ordinary word on its own,
    which would blank unrelated output (SPEC §8).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        values = list(values)
        self.values = tuple(values)
        forms = {form for v in values if v for form in _forms(v)}
        for v in values:
            if "\n" in v:
                forms |= {ln for ln in map(str.strip, v.splitlines()) if _maskable_line(ln)}
        ordered = sorted(forms, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.longest = max(map(len, ordered), default=0)

    def __bool__(self) -> bool:
        return self.pattern is not None

    def with_values(self, more: Iterable[str]) -> Masker:
        """A masker for these values too: what a ``set`` computed from a secret (a filter
        may have transformed it beyond what the secret's own forms match)."""
        return Masker([*self.values, *more])

    def __call__(self, text: str) -> str:
        if self.pattern is None or not text:
            return text
        return self.pattern.sub(MASK, text)


def _forms(value: str) -> set[str]:
    """A value as written, as ``quote`` renders it, and escaped inside quotes as Python's
    repr and JSON write it: an error message quotes a key it could not find with repr
    (``until: users[pw] == 1``), which escapes a value holding both kinds of quote."""
    return {value, shlex.quote(value), repr(value)[1:-1], json.dumps(value)[1:-1]}


_ARMOUR = re.compile(r"^-{5}(BEGIN|END) [A-Z0-9 ]+-{5}$")


def _maskable_line(line: str) -> bool:
    """A line of a multi-line secret that is masked wherever it appears: long enough,
    not armour, and not one ordinary word (letters only)."""
    return len(line) >= MIN_LINE and not _ARMOUR.match(line) and not line.isalpha()


def tokenize(text: str, values: Mapping[str, str]) -> str:
    """Replace secret values by named tokens, for saved plans that must not hold them."""
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
        quoted = shlex.quote(value)
        if quoted != value:
            text = text.replace(quoted, f"((secret:{name}|quote))")
        text = text.replace(value, f"((secret:{name}))")
    return text


_TOKEN = re.compile(r"\(\(secret:([A-Za-z_][A-Za-z0-9_]*)(\|quote)?\)\)")


def token(name: str) -> str:
    """What stands for secret ``name`` in a stored value (``fill_tokens`` puts it back)."""
    return f"((secret:{name}))"


def fill_values(values: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """Stored values (``Templates.values``) with their secrets' tokens — how a vaulted
    value is stored — replaced by ``secrets`` (real values, or stand-ins to show)."""
    return {k: each_string(v, lambda s: fill_tokens(s, secrets)) for k, v in values.items()}


def each_string(value: Any, change: Callable[[str], str]) -> Any:
    """``change`` applied to every string in ``value``, in its lists and mappings too (a
    registered value's ``stdout_lines``: the top-level strings alone left the lines'
    secrets in the journal and on the console)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [each_string(v, change) for v in value]
    if isinstance(value, dict):
        changed = {k: each_string(v, change) for k, v in value.items()}
        if type(value) is dict:
            return changed
        clone = copy.copy(value)  # a subclass keeps what it knows (a skipped register's host)
        clone.clear()
        clone.update(changed)
        return clone
    return value


def fill_tokens(text: str, values: Mapping[str, str]) -> str:
    """``text`` with the tokens of the secrets in ``values`` replaced by their values;
    any other text, and tokens of other names, left as they are."""
    if "((secret:" not in text:
        return text

    def put(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        if v is None:
            return m.group(0)
        return shlex.quote(v) if m.group(2) else v

    return _TOKEN.sub(put, text)


def detokenize(text: str, values: Mapping[str, str]) -> str:
    """Put secret values back into a saved plan's text at apply time."""

    def put(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise InputError(f"saved plan needs secret {m.group(1)!r}, which is not defined")
        v = values[m.group(1)]
        return shlex.quote(v) if m.group(2) else v

    return _TOKEN.sub(put, text)


@dataclass(frozen=True)
class Secrets:
    """Secret values (never shown), where they come from (stored in place of values), and
    the masker that hides them in output."""

    values: dict[str, str] = field(default_factory=dict)
    sources: SecretSources = field(default_factory=dict)

    @property
    def masker(self) -> Masker:
        return Masker(self.values.values())

    @classmethod
    def read(cls, specs: list[SecretSpec] | tuple[SecretSpec, ...]) -> Secrets:
        return cls(resolve_secrets(specs), {s.name: _source(s) for s in specs})

    def with_vault(self, keyring: Keyring) -> Secrets:
        """These secrets and the vaulted values the plan revealed (SPEC §13)."""
        if not keyring.revealed:
            return self
        return Secrets({**self.values, **keyring.revealed}, {**self.sources, **keyring.sources})

    @classmethod
    def from_sources(
        cls, sources: SecretSources, keyring: Keyring | None = None, where: str = ""
    ) -> Secrets:
        """A saved plan's secrets, read again: ``env``/``file`` sources as written,
        ``vault`` ones (their envelopes) decrypted with ``keyring``."""
        specs = [
            SecretSpec(n, s.get("env"), s.get("file"), None, s.get("pipe"), s.get("cwd"))
            for n, s in sources.items()
            if "vault" not in s
        ]
        secrets = cls.read(specs)
        vaulted = {n: s["vault"] for n, s in sources.items() if "vault" in s}
        for name, envelope in vaulted.items():
            keyring = keyring or Keyring()
            plain, _ = keyring.open(envelope, Position(where) if where else None)
            secrets.values[name] = plain
            secrets.sources[name] = {"vault": envelope}
        return secrets


def _source(spec: SecretSpec) -> dict[str, str]:
    """Where a secret is read again from, as a saved plan stores it."""
    if spec.env:
        return {"env": spec.env}
    if spec.pipe is not None:
        return {"pipe": spec.pipe, "cwd": spec.cwd or ""}
    return {"file": spec.file or ""}


def lookups_for(sources: SecretSources) -> Lookups:
    """Lookups that know these secrets' sources: a ``lookup('file', ...)`` of a secret's
    file (or env variable, or pipe command) renders as that secret."""
    return Lookups(
        secrets=tuple(
            SecretSource(name, s.get("env"), s.get("file"), s.get("pipe"))
            for name, s in sources.items()
            if "vault" not in s
        )
    )
