"""Running the CLI as a user does: a subprocess, its exit code and its output."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

# The checkout under test, first on the child's path: a subprocess started from a temp dir
# would otherwise import whichever runbook is installed (an editable install of another
# worktree, say).
ROOT = Path(__file__).resolve().parents[2]
NOBODY = pwd.getpwnam("nobody")  # the unprivileged user of the become tests


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "NO_COLOR": "1", "PYTHONPATH": path, **(extra or {})}


def runbook(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = _env(None)
    full_env.pop("RUNBOOK_FAULT_POINT", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        cwd=cwd,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def events(lines: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines.split("\n") if line.strip()]


def journal_dirs(base: Path) -> list[Path]:
    root = base / ".runbook" / "runs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def journal_events(run_dir: Path) -> list[dict[str, Any]]:
    """Complete lines only: the journal may be mid-write while a run goes on."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    return events(text[: text.rfind("\n") + 1])


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until ``predicate()`` is true; fail the test (never hang) after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def finished(stdout: str) -> list[dict[str, Any]]:
    """The ``command_finished`` events of an ``--output json`` run."""
    return [e for e in events(stdout) if e["event"] == "command_finished"]
