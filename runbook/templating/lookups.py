"""Ansible's lookups in templates: ``lookup('env', NAME)``, ``lookup('file', PATH)``,
``lookup('pipe', CMD)`` (and ``query``/``q``, which return lists).

They take a value from the controller when the template is rendered: at plan time for
every command the plan shows rendered, and lazily for inventory values (mitogen's public
inventory sets ``ansible_user: "{{ lookup('pipe', 'whoami') }}"``). A relative ``file``
path, and a ``pipe`` command's working directory, are the directory of the file that
holds the template (the runbook, an included file, the inventory). A ``pipe`` command
runs once per planning pass however many hosts read it; its stdout is the value, without
the trailing newline; a failure is a ``TemplateError`` naming the command (exit 2).

A lookup of a source the runbook lists under ``secrets:`` (the same file, environment
variable or command) is that secret: it renders as the secret's stand-in, and the
planner makes the command a secret command (rendered with the real value only at apply).

What a planning pass allows and has cached is a ``Lookups``, made current for the pass
with ``planning``; ``runbook diff --git`` plans a revision with ``pipe`` refused, since
reviewing a change must execute nothing from it, and with ``file`` kept inside the
revision's tree and ``env`` answered with a stand-in: a diff posted on a pull request must
not show the controller's files or environment (a CI token) to whoever wrote the change.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jinja2

from runbook.errors import Position
from runbook.text import STAND_IN

PIPE_TIMEOUT = 60.0  # seconds a pipe lookup may run


class LookupFailed(jinja2.TemplateRuntimeError):
    """A lookup that cannot give its value: rendered as a ``TemplateError`` at the
    template's file:line (exit 2 at plan time; the command fails at apply time)."""


@dataclass(frozen=True)
class SecretSource:
    """Where a ``secrets:`` entry is read from, as a lookup would name it."""

    name: str
    env: str | None = None
    file: str | None = None  # absolute
    pipe: str | None = None


@dataclass
class Lookups:
    """One planning pass's lookups: what is allowed, the secret sources, the cache."""

    pipe_refused: str | None = None  # why pipe lookups may not run here (diff --git)
    # An untrusted revision's tree (diff --git): file lookups stay inside it, env lookups
    # read nothing of the controller.
    confined_to: str | None = None
    secrets: tuple[SecretSource, ...] = ()
    touched: set[str] | None = None  # secret names read through lookups, while recording
    _pipes: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def secret_for(self, kind: str, term: str) -> str | None:
        for s in self.secrets:
            if getattr(s, kind) == term:
                return s.name
        return None

    def pipe(self, command: str, cwd: str) -> str:
        if self.pipe_refused is not None:
            raise LookupFailed(f"lookup('pipe', {command!r}) not run: {self.pipe_refused}")
        with self._lock:
            done = self._pipes.get((command, cwd))
        if done is None:
            try:
                done = run_pipe(command, cwd)
            except PipeFailed as exc:
                raise LookupFailed(f"lookup('pipe', {command!r}) {exc}") from None
            with self._lock:
                self._pipes[(command, cwd)] = done
        return done


_DEFAULT = Lookups()
_CURRENT: contextvars.ContextVar[Lookups] = contextvars.ContextVar("lookups", default=_DEFAULT)
_WHERE: contextvars.ContextVar[Position | None] = contextvars.ContextVar("where", default=None)


@contextlib.contextmanager
def planning(lookups: Lookups) -> Iterator[Lookups]:
    """Make ``lookups`` the current pass's while the block plans."""
    token = _CURRENT.set(lookups)
    try:
        yield lookups
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def rendering_at(position: Position | None) -> Iterator[None]:
    """Where the template being rendered is written: relative lookups start there."""
    token = _WHERE.set(position)
    try:
        yield
    finally:
        _WHERE.reset(token)


@contextlib.contextmanager
def recording() -> Iterator[set[str]]:
    """Collect the secret names that lookups read while the block renders."""
    lookups = _CURRENT.get()
    outer, lookups.touched = lookups.touched, set()
    try:
        yield lookups.touched
    finally:
        lookups.touched = outer


def _base_dir() -> str:
    where = _WHERE.get()
    if where is not None and where.file and not where.file.startswith("<"):
        return os.path.dirname(os.path.abspath(where.file))
    return os.getcwd()


@jinja2.pass_context
def lookup(context: jinja2.runtime.Context, name: str, *terms: Any, **options: Any) -> Any:
    """``lookup(NAME, TERM, ...)``: the values joined with commas, as Ansible's are."""
    values = _values(context, name, terms, options)
    if options.get("wantlist"):
        return values
    return ",".join(str(v) for v in values)


@jinja2.pass_context
def query(context: jinja2.runtime.Context, name: str, *terms: Any, **options: Any) -> list[Any]:
    """``query(NAME, TERM, ...)`` (``q``): always a list."""
    return _values(context, name, terms, options)


def _values(
    context: jinja2.runtime.Context, name: str, terms: Iterable[Any], options: dict[str, Any]
) -> list[Any]:
    kinds = {"env": _env, "file": _file, "pipe": _pipe}
    name = name.removeprefix("ansible.builtin.")  # the FQCN Ansible also accepts
    if name not in kinds:
        raise LookupFailed(f"lookup {name!r} is not supported (env, file and pipe are)")
    lookups = _CURRENT.get()
    out = []
    for term in _terms(terms):
        if not isinstance(term, str):
            raise LookupFailed(f"lookup({name!r}, ...) takes text, got {type(term).__name__}")
        secret = _secret(lookups, name, term)
        if secret is not None:
            if lookups.touched is not None:
                lookups.touched.add(secret)
            # The secret's stand-in at plan time, its value where it is rendered for real.
            out.append(context.get(secret, "********"))
            continue
        out.append(kinds[name](lookups, term, options))
    return out


def _terms(terms: Iterable[Any]) -> list[Any]:
    flat: list[Any] = []
    for t in terms:
        flat.extend(t if isinstance(t, list) else [t])
    return flat


def _secret(lookups: Lookups, kind: str, term: str) -> str | None:
    if not lookups.secrets:
        return None
    if kind == "file":
        term = os.path.normpath(os.path.join(_base_dir(), term))
    return lookups.secret_for(kind, term)


def _env(lookups: Lookups, term: str, options: dict[str, Any]) -> str:
    if lookups.confined_to is not None:
        return STAND_IN  # the controller's environment is not the revision's to show
    value = os.environ.get(term)
    if value is None:
        if "default" in options:
            return str(options["default"])
        return ""  # as Ansible's env lookup: an unset variable is empty
    return value


def _file(lookups: Lookups, term: str, options: dict[str, Any]) -> str:
    path = os.path.join(_base_dir(), term)
    root = lookups.confined_to
    if root is not None and not os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
        raise LookupFailed(
            f"lookup('file', {term!r}) not read: it is outside the revision's tree, and "
            f"{lookups.pipe_refused or 'the revision is not trusted'}"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise LookupFailed(f"lookup('file', {term!r}): cannot read {path}: {why}") from None
    if options.get("lstrip"):
        text = text.lstrip()
    return text.rstrip() if options.get("rstrip", True) else text


def _pipe(lookups: Lookups, term: str, options: dict[str, Any]) -> str:
    return lookups.pipe(term, _base_dir())


class PipeFailed(Exception):
    """A controller command that failed; its text says how (``exited 1: ...``)."""


def run_pipe(command: str, cwd: str | None) -> str:
    """``command`` run by the shell on the controller, in ``cwd``: its stdout without the
    trailing newlines. For ``lookup('pipe', ...)`` and ``secrets: {pipe: ...}`` alike.
    Raises ``PipeFailed``."""
    try:
        proc = subprocess.run(
            command,
            shell=True,
            cwd=cwd or None,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=PIPE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise PipeFailed(f"did not finish in {PIPE_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise PipeFailed(f"could not run: {exc.strerror}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-400:]
        raise PipeFailed(f"exited {proc.returncode}" + (f": {err}" if err else ""))
    return proc.stdout.decode("utf-8", "replace").rstrip("\n")


GLOBALS = {"lookup": lookup, "query": query, "q": query}
