"""What an operator sees at scale (issue 15, SPEC §7): a plan a reviewer can read at 40
hosts, a recap that folds the hosts where nothing went wrong, output streamed while a
command runs, and the small things (runs of one runbook, step name prefixes, plurals,
``{% for %}`` without blank lines)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.helpers import journal_dirs, journal_events, runbook, start, write

FORTY = "hosts:\n  web:\n    hosts:\n" + "".join(
    f"      web{i:02d}: {{connection: local}}\n" for i in range(1, 41)
)


def test_forty_identical_hosts_plan_to_one_line_per_step(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        "name: forty\n" + FORTY + "steps:\n"
        "  - {name: restart, hosts: web, run: systemctl restart app}\n"
        "  - {name: check, hosts: web, run: curl -fs localhost/health}\n"
        "  - name: per host\n    hosts: web\n    run: echo {{ host.name }}\n",
    )
    text = runbook("plan", str(rb), cwd=tmp_path).stdout
    assert "    web[01:40]  $ systemctl restart app\n" in text
    assert "    web[01:40]  $ curl -fs localhost/health\n" in text
    assert text.count("$ echo web") == 40  # per-host differences stay per host
    assert len(text.splitlines()) < 70
    expanded = runbook("plan", "--expand", str(rb), cwd=tmp_path).stdout
    assert expanded.count("$ systemctl restart app") == 40
    # Byte-deterministic either way.
    assert runbook("plan", str(rb), cwd=tmp_path).stdout == text


def test_the_recap_folds_hosts_without_a_failure_into_one_line(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        "name: forty\n" + FORTY + "steps:\n"
        "  - name: mostly fine\n    hosts: web\n    on_failure: continue\n"
        "    run: test {{ host.name }} != web07 && test {{ host.name }} != web31\n",
    )
    done = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "38 hosts without a failure: web[01:06], web[08:30], web[32:40] (38 ok)" in out
    table = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert [ln.split("|")[1].strip() for ln in table] == ["host", "web07", "web31"]
    # An all-ok run's console: a line per step, not per host.
    assert "  ok " not in out
    assert len(out.splitlines()) < 20


def test_fifty_unpadded_hosts_fold_into_one_range_in_plan_and_recap(tmp_path: Path) -> None:
    fifty = "hosts:\n  web:\n    hosts:\n" + "".join(
        f"      host{i}: {{connection: local}}\n" for i in range(1, 51)
    )
    rb = write(
        tmp_path / "rb.yml",
        "name: fifty\n" + fifty + "steps:\n  - {name: check, hosts: web, run: 'true'}\n",
    )
    assert "    host[1:50]  $ true\n" in runbook("plan", str(rb), cwd=tmp_path).stdout
    done = runbook("apply", "--yes", "--forks", "5", str(rb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "50 hosts without a failure: host[1:50] (50 ok)" in done.stdout


def test_verbose_streams_output_while_a_command_runs_and_the_journal_keeps_it(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    rb = write(
        tmp_path / "rb.yml",
        "name: stream\nsteps:\n  - name: slow\n    hosts: localhost\n    run: |\n"
        "      echo first line; sleep 1.5; echo second line\n"
        f"      while [ ! -e {gate} ]; do sleep 0.05; done; echo last line\n",
    )
    proc = start("apply", "--yes", "-v", str(rb), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + 30
        while "second line" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        # Shown while the command still runs (it waits for the gate).
        assert "localhost | first line" in seen and "localhost | second line" in seen
        (run_dir,) = journal_dirs(tmp_path)
        # The journal's own thread writes what the console showed, while the command
        # still runs (it waits for the gate); under load it may lag the console a little.
        partial = ""
        while "second line" not in partial and time.monotonic() < deadline:
            partial = "".join(
                e["data"] for e in journal_events(run_dir) if e["event"] == "command_output"
            )
            time.sleep(0.05)
        assert "first line\nsecond line\n" in partial and proc.poll() is None
        proc.send_signal(signal.SIGKILL)  # the partial output is on disk already
        proc.communicate(timeout=30)
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
    kept = "".join(e["data"] for e in journal_events(run_dir) if e["event"] == "command_output")
    assert "first line\nsecond line\n" in kept


def _first_then_silence(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A command that notes the time, prints one line, then is silent for 4 s."""
    printed, second = tmp_path / "printed", tmp_path / "second"
    rb = write(
        tmp_path / "rb.yml",
        "name: stream\nsteps:\n  - name: slow\n    hosts: localhost\n    run: |\n"
        f"      date +%s.%N > {printed}; echo first; sleep 4; touch {second}; echo second\n",
    )
    return rb, printed, second


def test_verbose_shows_a_line_as_soon_as_it_is_printed(tmp_path: Path) -> None:
    """``echo first; sleep 4; echo second``: ``first`` shows while the command sleeps,
    within half a second of its printing it (the bound is generous: it takes ms)."""
    rb, printed, second = _first_then_silence(tmp_path)
    proc = start("apply", "--yes", "-v", str(rb), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        seen = ""
        while "localhost | first" not in seen:
            line = proc.stdout.readline()
            assert line, seen
            seen += line
        shown_at = time.time()
        assert not second.exists()  # still sleeping
        assert shown_at - float(printed.read_text()) < 0.5
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "localhost | second" in out


def test_verbose_on_a_terminal_shows_a_line_while_the_command_is_silent(tmp_path: Path) -> None:
    import os
    import pty
    import select

    rb, printed, second = _first_then_silence(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "apply", "--yes", "-v", str(rb)],
        cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )  # fmt: skip
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 60
        while b"localhost | first" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                out += os.read(master, 65536)
        assert b"localhost | first" in out, out
        assert not second.exists()  # shown while the command still sleeps
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0


def test_an_export_with_empty_groups_plans_on_its_hosts_only(tmp_path: Path) -> None:
    """``ansible-inventory --list`` exports print ``"ungrouped": {}`` (and ``{"hosts": []}``)
    for empty groups: planning on ``all`` must not meet a host named ``ungrouped``."""
    write(
        tmp_path / "export.json",
        '{"_meta": {"hostvars": {"web1": {"ansible_connection": "local"}}},'
        ' "all": {"children": ["ungrouped", "web", "db"]},'
        ' "ungrouped": {}, "db": {"hosts": []}, "web": {"hosts": ["web1"]}}',
    )
    rb = write(
        tmp_path / "rb.yml",
        "name: export\ninventory: export.json\nsteps:\n"
        "  - {name: everywhere, hosts: all, run: 'echo {{ host.name }}'}\n"
        "  - {name: the empty group, hosts: db, run: echo never}\n",
    )
    plan = runbook("plan", "--format", "json", str(rb), cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    steps = json.loads(plan.stdout)["steps"]
    hosts = [[c["host"] for b in s["batches"] for c in b] for s in steps]
    assert hosts == [["web1"], []]
    done = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ungrouped" not in done.stdout.split("RECAP")[-1]


def test_runs_of_one_runbook_and_steps_by_prefix(tmp_path: Path) -> None:
    steps = "steps:\n  - {name: Stop the app, hosts: localhost, run: echo 1}\n"
    one = write(tmp_path / "one.yml", "name: one\n" + steps)
    two = write(tmp_path / "two.yml", "name: two\n" + steps)
    for rb in (one, two):
        assert runbook("apply", "--yes", str(rb), cwd=tmp_path).returncode == 0
    runs = runbook("runs", str(one), cwd=tmp_path).stdout.splitlines()
    assert len(runs) == 1 and "  one  " in runs[0]
    run_id = runs[0].split()[0]
    shown = runbook("show", run_id, str(one), "--step", "Stop", cwd=tmp_path)
    assert shown.returncode == 0 and "== Stop the app @ localhost: ok" in shown.stdout
    bad = runbook("show", run_id, str(one), "--step", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "no step named 'nope'" in bad.stderr


def test_counts_read_as_english_and_for_loops_leave_no_blank_lines(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        "name: one\nsteps:\n  - name: s\n    hosts: localhost\n    run: |\n"
        "      {% for i in [1, 2] %}\n      echo {{ i }}\n      {% endfor %}\n",
    )
    plan = runbook("plan", str(rb), cwd=tmp_path).stdout
    assert "1 step, 1 host, 1 command" in plan
    assert "$ echo 1\n" in plan and "\n                 echo 2\n" in plan
    assert "\n\n                 echo" not in plan
    done = subprocess.run(
        [sys.executable, "-m", "runbook", "apply", "--yes", str(rb)],
        cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert "(1 step, 1 host, 1 command, forks 10)" in done.stdout
    assert "[1/1] s (1 host)" in done.stdout
