"""Command-line values are checked like runbook values (SPEC §6; issue 24): ``--forks
1000000`` started a run and ended in "can't start new thread" (exit 70); ``--connect-timeout
nan`` and ``-1`` were taken. Now exit 2 before anything runs, one line; the Python API
refuses the same values (the bad-input corpus has the CLI's cases: ``cli_*.yml``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runbook import api
from runbook.errors import UsageError
from runbook.options import MAX_FORKS, SshOptions
from tests.e2e.helpers import journal_dirs, runbook, write

RUNBOOK = (
    "name: v\nhosts:\n  web: [localhost]\nsteps:\n  - name: s\n    hosts: web\n    run: touch ran\n"
)


@pytest.mark.parametrize(
    "args",
    [
        ["--forks", "1000000"],
        ["--forks", "0"],
        ["--forks", "-3"],
        ["--connect-timeout", "nan"],
        ["--connect-timeout", "-1"],
        ["--connect-timeout", "0"],
        ["--connect-timeout", "inf"],
        ["--connect-timeout", "1e9"],
    ],
)
def test_a_bad_cli_value_is_exit_2_and_nothing_runs(tmp_path: Path, args: list[str]) -> None:
    rb = write(tmp_path / "rb.yml", RUNBOOK.format(tmp_path / "ran"))
    done = runbook("apply", "--yes", *args, str(rb), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"{args[0]} ") and len(done.stderr.splitlines()) == 1
    assert "internal error" not in done.stderr
    assert not (tmp_path / "ran").exists() and journal_dirs(tmp_path) == []


def test_the_limits_are_usable(tmp_path: Path) -> None:
    rb = write(tmp_path / "rb.yml", RUNBOOK.format(tmp_path / "ran"))
    done = runbook(
        "apply", "--yes", "--forks", str(MAX_FORKS), "--connect-timeout", "0.5", str(rb),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_api_refuses_the_same_values(tmp_path: Path) -> None:
    rb = write(tmp_path / "rb.yml", RUNBOOK.format(tmp_path / "ran"))
    for forks in (0, MAX_FORKS + 1, True):
        with pytest.raises(UsageError, match="--forks"):
            api.apply(str(rb), forks=forks)
    for seconds in (math.nan, -1.0, math.inf):
        with pytest.raises(UsageError, match="--connect-timeout"):
            SshOptions(connect_timeout=seconds)
    assert not (tmp_path / "ran").exists()
