"""``plan --check`` on the controller (``localhost``): a discover step, a copy gated by
what it found (its diff shown), one gated by a value only apply has (not diffed), and a
saved plan refused when the state it was checked against changed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.helpers import journal_dirs, runbook

RUNBOOK = """
name: local check
steps:
  - name: Read the mode
    hosts: localhost
    discover: true
    run: cat state.txt
    register: mode
  - name: Ship the config
    hosts: localhost
    when: mode.stdout == 'on'
    copy: {src: files/app.conf, dest: out/app.conf}
  - name: Restart
    hosts: localhost
    run: echo restarting in {{ mode.stdout }} mode
    register: restarted
  - name: Ship the marker
    hosts: localhost
    when: restarted.rc == 0
    copy: {src: files/app.conf, dest: out/marker.conf}
"""


def setup(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "files" / "app.conf").write_text("a = 1\nb = 2\n")
    (tmp_path / "out" / "app.conf").write_text("a = 1\nb = 3\n")
    (tmp_path / "state.txt").write_text("on\n")
    rb = tmp_path / "rb.yml"
    rb.write_text(RUNBOOK)
    return rb


def test_check_on_the_controller(tmp_path: Path) -> None:
    setup(tmp_path)
    proc = runbook("plan", "--check", "rb.yml", "--out", "p.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "found: 'on'" in text
    assert "localhost  $ echo restarting in on mode\n" in text
    assert "-b = 3\n" in text and "+b = 2\n" in text  # the copy its when lets through
    assert "diff: not shown, the copy's when is decided at apply" in text  # restarted.rc
    assert (tmp_path / "out" / "app.conf").read_text() == "a = 1\nb = 3\n"  # read only
    (run,) = journal_dirs(tmp_path)
    assert json.loads((run / "meta.json").read_text())["kind"] == "discovery"

    (tmp_path / "state.txt").write_text("off\n")
    refused = runbook("apply", "--yes", "p.json", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "stale plan: localhost 'Read the mode' printed 'off', the plan has 'on'\n"
    )
    assert (tmp_path / "out" / "app.conf").read_text() == "a = 1\nb = 3\n"

    (tmp_path / "state.txt").write_text("on\n")
    done = runbook("apply", "--yes", "p.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the hosts still show what the plan was checked against (1 values)" in done.stderr
    assert (tmp_path / "out" / "app.conf").read_text() == "a = 1\nb = 2\n"
    assert (tmp_path / "out" / "marker.conf").exists()


def test_a_discover_step_that_reads_a_later_register_is_exit_2(tmp_path: Path) -> None:
    setup(tmp_path)
    rb = tmp_path / "rb.yml"
    rb.write_text(
        RUNBOOK + "  - {name: Look again, hosts: localhost, discover: true,"
        " run: 'echo {{ restarted.stdout }}'}\n"
    )
    proc = runbook("plan", "--check", "rb.yml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("rb.yml:21:")  # where the step reads it
    assert "a discover step reads 'restarted', registered by 'Restart'" in proc.stderr
    assert not journal_dirs(tmp_path)  # refused before anything ran
