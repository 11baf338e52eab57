"""The host-side backup script (``run/transfer/backup.py``) on its own: what it keeps,
under which name, and that it never writes over or through what is already there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runbook.run.transfer.backup import BACKUP


def backup(path: Path, bin_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if bin_dir is not None:  # a `date` that always says the same second
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["/bin/sh", "-c", BACKUP, "sh", str(path)], capture_output=True, text=True, env=env
    )


def frozen_clock(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "date"
    fake.write_text("#!/bin/sh\necho 20261127T202522\n")
    fake.chmod(0o755)
    return bin_dir


def test_nothing_to_keep_prints_nothing(tmp_path: Path) -> None:
    done = backup(tmp_path / "absent")
    assert (done.returncode, done.stdout) == (0, "")
    (tmp_path / "dir").mkdir()
    assert backup(tmp_path / "dir").stdout == ""  # only a regular file is kept
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    assert backup(tmp_path / "link").stdout == ""  # never through a symlink


def test_the_same_second_twice_gets_a_number_never_the_same_name(tmp_path: Path) -> None:
    clock = frozen_clock(tmp_path)
    dest = tmp_path / "app.conf"
    dest.write_text("one\n")
    first = backup(dest, clock).stdout.strip()
    assert first == f"{dest}.20261127T202522~"
    assert os.stat(first).st_ino == os.stat(dest).st_ino  # a hard link: the old inode
    dest.unlink()
    dest.write_text("two\n")
    second = backup(dest, clock).stdout.strip()
    assert second == f"{dest}.20261127T202522.1~"
    assert Path(first).read_text() == "one\n" and Path(second).read_text() == "two\n"


def test_a_planted_name_is_skipped_not_written_through(tmp_path: Path) -> None:
    clock = frozen_clock(tmp_path)
    dest = tmp_path / "app.conf"
    dest.write_text("mine\n")
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    Path(f"{dest}.20261127T202522~").symlink_to(victim)
    kept = backup(dest, clock).stdout.strip()
    assert kept == f"{dest}.20261127T202522.1~"
    assert victim.read_text() == "untouched\n"
