"""The last resort: a bug becomes one line, a crash report and exit 70 — not a traceback
and not exit 2, which means "bad input, nothing ran" (SPEC §8)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from runbook.cli import main as cli
from runbook.plan import planner


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("simulated bug")


def test_a_bug_before_anything_ran_is_one_line_and_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text("name: x\nsteps:\n  - name: s\n    hosts: localhost\n    run: echo\n")
    monkeypatch.setattr(planner, "make_plan", _boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = cli.main(["plan", str(rb)])
    err = capsys.readouterr().err
    assert code == 70
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "internal error (RuntimeError: simulated bug)" in err
    (report,) = tmp_path.glob("runbook-crash-*.txt")
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert "Traceback" in report.read_text() and "simulated bug" in report.read_text()


def test_a_bug_during_a_run_reports_into_its_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runbook.cli import recap as recap_module

    rb = tmp_path / "rb.yml"
    rb.write_text("name: x\nsteps:\n  - name: s\n    hosts: localhost\n    run: echo\n")
    monkeypatch.setattr(recap_module, "recap", _boom)
    code = cli.main(["apply", "--yes", str(rb)])
    err = capsys.readouterr().err
    assert code == 70 and "simulated bug" in err
    (run_dir,) = [p for p in (tmp_path / ".runbook" / "runs").iterdir() if p.is_dir()]
    (report,) = run_dir.glob("runbook-crash-*.txt")
    assert str(report) in err
