"""Executable inventories: run as Ansible runs an inventory script.

``FILE --list`` prints the ``--list`` JSON shape (see ``listing``); without
``_meta.hostvars`` in it, ``FILE --host NAME`` is run for each host, as Ansible does. A
script that fails, hangs past ``TIMEOUT`` or prints something that is not a JSON object is
an ``InventoryError`` that shows what it wrote to stderr. Its output is data: strings in it
are never treated as templates.
"""

from __future__ import annotations

import errno
import os
import subprocess
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.inventory import listing
from runbook.inventory.graph import GraphBuilder
from runbook.inventory.text import parse_json

TIMEOUT = 30.0  # seconds for each run of the script
_STDERR_SHOWN = 400  # characters of stderr kept in the one-line error


class NotAScript(Exception):
    """The file is executable but the kernel cannot run it (no shebang): read it as text."""


def is_executable(file: str) -> bool:
    return os.path.isfile(file) and os.access(file, os.X_OK)


def looks_like_program(file: str) -> bool:
    """An executable file that the kernel would run (a ``#!`` script or a binary), as
    opposed to an inventory text file that merely has its x bit set."""
    if not is_executable(file):
        return False
    try:
        with open(file, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith((b"#!", b"\x7fELF"))


def read(file: str, graph: GraphBuilder) -> None:
    """Run ``file --list`` and read its output into ``graph``; ``NotAScript`` if it cannot
    be executed at all (Ansible then tries the file's other formats, and so do we)."""
    where = Position(file)
    data = _run(file, ["--list"], where)

    def host_vars(host: str) -> dict[str, Any]:
        found = _run(file, ["--host", host], where)
        if not isinstance(found, dict):
            raise InventoryError(f"`--host {host}` must print a JSON object", where)
        return found

    listing.read(data, graph, where, host_vars)


def _run(file: str, args: list[str], where: Position) -> Any:
    command = f"{os.path.basename(file)} {' '.join(args)}"
    try:
        proc = subprocess.run(
            [os.path.abspath(file), *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise InventoryError(
            f"inventory script `{command}` did not finish within {TIMEOUT:g} s{_stderr(e.stderr)}",
            where,
        ) from None
    except OSError as e:
        if e.errno == errno.ENOEXEC:
            raise NotAScript(file) from None
        raise InventoryError(f"cannot run inventory script: {e.strerror}", where) from None
    if proc.returncode != 0:
        raise InventoryError(
            f"inventory script `{command}` exited with status {proc.returncode}"
            f"{_stderr(proc.stderr)}",
            where,
        )
    try:
        text = proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise InventoryError(f"`{command}` printed text that is not UTF-8", where) from None
    try:
        return parse_json(text, file)
    except InventoryError as e:
        raise InventoryError(
            f"`{command}` did not print JSON ({e.message}){_stderr(proc.stderr)}", where
        ) from None


def _stderr(data: bytes | None) -> str:
    """A script's stderr folded onto the error's one line."""
    text = " / ".join(
        line.strip()
        for line in (data or b"").decode("utf-8", "replace").splitlines()
        if line.strip()
    )
    if not text:
        return ""
    if len(text) > _STDERR_SHOWN:
        text = "..." + text[-_STDERR_SHOWN:]
    return f"; its stderr: {text}"
