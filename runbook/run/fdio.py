"""Writing to a raw file descriptor, where ``os.write`` may take only part of the bytes."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to ``fd`` (a pipe, a memfd, an unbuffered file: a full disk
    fails this call itself, not a later flush)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
