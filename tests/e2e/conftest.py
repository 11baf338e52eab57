"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import NOBODY


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can reach (not under a 0700 tmp_path), with a subdirectory
    ``nobody`` owns: where become and non-root copies write."""
    root = Path(tempfile.mkdtemp(prefix="runbook-e2e-"))
    os.chmod(root, 0o755)
    (root / "nobody").mkdir()
    os.chown(root / "nobody", NOBODY.pw_uid, NOBODY.pw_gid)
    try:
        yield root
    finally:
        shutil.rmtree(root)
