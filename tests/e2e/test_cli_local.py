"""The engine end to end on localhost: ``python -m runbook`` as an operator runs it.

Every runbook is written into ``tmp_path`` and targets ``localhost`` or inline hosts with
``connection: local``; side effects are files in ``tmp_path``, so "did it run?" is a file
that exists or not. The journal lands in ``tmp_path/.runbook``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import events, runbook

HANG = 60  # seconds; only a hang reaches it

DOCUMENTED_EVENTS = {
    "run_started",
    "step_started",
    "command_finished",
    "step_finished",
    "run_finished",
}

FOUR_LOCAL = """
hosts:
  fleet:
    hosts:
      h1: {connection: local}
      h2: {connection: local}
      h3: {connection: local}
      h4: {connection: local}
"""


# -- helpers ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "rb.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def apply(tmp_path: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return runbook("apply", "rb.yml", "--yes", *args, cwd=tmp_path, **kw)


def results(stdout: str) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events(stdout):
        if e["event"] == "command_finished":
            key = (e["step"], e["host"])
            assert key not in out, f"two results for {key}"
            out[key] = e
    return out


def recap_row(stdout: str, host: str) -> dict[str, str]:
    """The recap table's row for ``host``: status → cell (``.`` for zero)."""

    def cells(line: str) -> list[str]:
        # Box-drawing borders on a UTF-8 stream; plain ``|`` if rich falls back to ASCII.
        return [c.strip() for c in re.split("[│┃|]", line)[1:-1]]

    header = next(ln for ln in stdout.splitlines() if "host" in ln and "timed_out" in ln)
    columns = cells(header)
    for line in stdout.splitlines():
        row = cells(line)
        if row and row[0] == host:
            return dict(zip(columns[1:], row[1:], strict=True))
    raise AssertionError(f"no recap row for {host}:\n{stdout}")


def journal_runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / ".runbook" / "runs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def pgrep(pattern: str) -> list[str]:
    proc = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, timeout=HANG)
    return proc.stdout.split()


def unique_sleep() -> str:
    """A ``sleep`` argument no other process on the machine uses: 1000.<random>."""
    return f"1000.{uuid.uuid4().int % 10**6:06d}"


# -- policy: halt, continue, max_failures ---------------------------------------------------


def test_halt_stops_later_steps(tmp_path):
    write(
        tmp_path,
        """
        name: halting
        steps:
          - name: first
            hosts: localhost
            run: touch first.done
          - name: breaks
            hosts: localhost
            run: echo about to fail; exit 7
          - name: later
            hosts: localhost
            run: touch later.done
          - name: last
            hosts: localhost
            run: touch last.done
        """,
    )
    proc = apply(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (tmp_path / "first.done").exists()
    assert not (tmp_path / "later.done").exists()
    assert not (tmp_path / "last.done").exists()
    assert "steps not run (halted): later, last" in proc.stdout
    assert "halted: step 'breaks' failed on localhost" in proc.stdout
    # The failed command's output is shown to the operator.
    assert "about to fail" in proc.stdout
    assert "exit code 1" in proc.stdout
    # ok: first; failed: breaks; cancelled: later, last
    assert recap_row(proc.stdout, "localhost") == {
        "ok": "1",
        "failed": "1",
        "timed_out": ".",
        "unreachable": ".",
        "skipped": ".",
        "cancelled": "2",
    }


def test_on_failure_continue_goes_on_and_counts_the_failure(tmp_path):
    write(
        tmp_path,
        """
        name: continuing
        steps:
          - name: may fail
            hosts: localhost
            on_failure: continue
            run: exit 3
          - name: afterwards
            hosts: localhost
            run: touch after.done
        """,
    )
    proc = apply(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "after.done").exists()
    row = recap_row(proc.stdout, "localhost")
    assert (row["ok"], row["failed"], row["cancelled"]) == ("1", "1", ".")
    assert "exit code 0" in proc.stdout


MAX_FAILURES = (
    "name: tolerance\n"
    + textwrap.dedent(FOUR_LOCAL).lstrip("\n")
    + """\
steps:
  - name: flaky
    hosts: fleet
    max_failures: 1
    run: |
      case {{ host.name }} in {{ bad }}) exit 4;; esac
      touch flaky-{{ host.name }}
  - name: next
    hosts: fleet
    run: touch next-{{ host.name }}
"""
)


def test_max_failures_one_tolerates_one_failure(tmp_path):
    (tmp_path / "rb.yml").write_text(MAX_FAILURES)
    proc = apply(tmp_path, "--forks", "4", "-e", "bad=h2", "--output", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = results(proc.stdout)
    assert [res[("flaky", h)]["status"] for h in ("h1", "h2", "h3", "h4")] == [
        "ok",
        "failed",
        "ok",
        "ok",
    ]
    assert sorted(p.name for p in tmp_path.glob("flaky-*")) == ["flaky-h1", "flaky-h3", "flaky-h4"]
    assert sorted(p.name for p in tmp_path.glob("next-*")) == [f"next-h{i}" for i in range(1, 5)]
    step = next(e for e in events(proc.stdout) if e["event"] == "step_finished")
    assert step["status"] == "tolerated" and step["counts"]["failed"] == 1
    assert events(proc.stdout)[-1]["counts"]["failed"] == 1


def test_max_failures_one_halts_on_the_second_failure(tmp_path):
    (tmp_path / "rb.yml").write_text(MAX_FAILURES)
    proc = apply(tmp_path, "--forks", "4", "-e", "bad=h2|h4", "--output", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    res = results(proc.stdout)
    assert {h: res[("flaky", h)]["status"] for h in ("h2", "h4")} == {
        "h2": "failed",
        "h4": "failed",
    }
    assert {res[("next", f"h{i}")]["status"] for i in range(1, 5)} == {"cancelled"}
    assert list(tmp_path.glob("next-*")) == []
    fin = events(proc.stdout)[-1]
    assert fin["event"] == "run_finished" and fin["status"] == "halted"
    assert fin["steps_not_run"] == ["next"]


def test_serial_halt_leaves_later_batches_unrun(tmp_path):
    write(
        tmp_path,
        "name: rolling\n"
        + textwrap.dedent(FOUR_LOCAL).lstrip("\n")
        + """
        steps:
          - name: roll
            hosts: fleet
            serial: 1
            run: touch roll-{{ host.name }}; test {{ host.name }} != h2
        """.replace("\n        ", "\n"),
    )
    proc = apply(tmp_path, "--forks", "4", "--output", "json")
    assert proc.returncode == 1
    assert sorted(p.name for p in tmp_path.glob("roll-*")) == ["roll-h1", "roll-h2"]
    res = results(proc.stdout)
    assert [res[("roll", f"h{i}")]["status"] for i in range(1, 5)] == [
        "ok",
        "failed",
        "cancelled",
        "cancelled",
    ]


# -- timeouts ---------------------------------------------------------------------------


def test_timeout_kills_the_process_tree(tmp_path):
    tag = unique_sleep()
    write(
        tmp_path,
        f"""
        name: timeout
        steps:
          - name: hangs
            hosts: localhost
            timeout: 1
            run: sleep {tag} & sleep {tag}; wait
          - name: after
            hosts: localhost
            run: touch after.done
        """,
    )
    proc = apply(tmp_path, "--output", "json")
    assert proc.returncode == 1
    res = results(proc.stdout)
    assert res[("hangs", "localhost")]["status"] == "timed_out"
    assert "timed out after 1s" in res[("hangs", "localhost")]["error"]
    assert res[("after", "localhost")]["status"] == "cancelled"
    assert not (tmp_path / "after.done").exists()
    # Both sleeps (the backgrounded one too) and their shell are gone.
    assert pgrep(f"sleep {tag}") == []


# -- fault injection ----------------------------------------------------------------------


def test_fault_injection_fails_matching_steps_without_running_them(tmp_path):
    write(
        tmp_path,
        """
        name: rehearsal
        steps:
          - name: db-migrate
            hosts: localhost
            on_failure: continue
            run: touch migrated
          - name: db-vacuum
            hosts: localhost
            on_failure: continue
            run: touch vacuumed
          - name: web-reload
            hosts: localhost
            run: touch reloaded
        """,
    )
    proc = apply(tmp_path, "--output", "json", env={"RUNBOOK_FAULT_POINT": "db-"})
    assert proc.returncode == 0, proc.stderr
    res = results(proc.stdout)
    for step in ("db-migrate", "db-vacuum"):
        r = res[(step, "localhost")]
        assert (r["status"], r["rc"], r["stderr"]) == ("failed", 1, "fault injection")
    assert res[("web-reload", "localhost")]["status"] == "ok"
    assert not (tmp_path / "migrated").exists()
    assert not (tmp_path / "vacuumed").exists()
    assert (tmp_path / "reloaded").exists()


def test_fault_injection_under_halt_stops_the_run(tmp_path):
    write(
        tmp_path,
        """
        name: rehearsal
        steps:
          - name: stop service
            hosts: localhost
            run: touch stopped
          - name: start service
            hosts: localhost
            run: touch started
        """,
    )
    proc = apply(tmp_path, env={"RUNBOOK_FAULT_POINT": "stop"})
    assert proc.returncode == 1
    assert "fault injection" in proc.stdout
    assert not (tmp_path / "stopped").exists() and not (tmp_path / "started").exists()


# -- env, end to end ----------------------------------------------------------------------

ENV_VALUES = {
    "SPACES": "a  b   c",
    "QUOTES": """it's "quoted" ''""",
    "DOLLAR": "$HOME ${USER:-x} $(id -u) `id -u`",
    "SEMI": "a; touch pwned; b && c | d",
    "NEWLINES": "one\ntwo\n\nfour",
    "TRAILING_NL": "ends\n",
    "BACKSLASH": "C:\\dir\\n \\\\",
    "UNICODE": "grüße ✓ 日本 🎉",
    "BRACES": "{{ not a template }} {% nor this %}",
    "EMPTY": "",
}


def test_env_values_arrive_byte_exact(tmp_path):
    # Values travel as runbook vars (data, never re-rendered) into env templates; the
    # command dumps its own environment as JSON for comparison.
    (tmp_path / "dump_env.py").write_text(
        "import json, os, sys\n"
        "wanted = {k: v for k, v in os.environ.items() if k in sys.argv[1:] or k[:3] == 'RB_'}\n"
        "json.dump(wanted, open('env.json', 'w', encoding='utf-8'))\n"
    )
    dump = f"{shlex.quote(sys.executable)} dump_env.py " + " ".join(ENV_VALUES)
    # ensure_ascii=False: PyYAML turns a \ud83c\udf89 escape pair into two lone surrogates.
    vars_block = "\n".join(
        f"  v_{k.lower()}: {json.dumps(v, ensure_ascii=False)}" for k, v in ENV_VALUES.items()
    )
    env_block = "\n".join(f'      {k}: "{{{{ v_{k.lower()} }}}}"' for k in ENV_VALUES)
    text = (
        "name: env\nvars:\n"
        + vars_block
        + "\nenv:\n  RB_LITERAL: \"plain text; with $dollar and 'quotes'\"\n"
        + "steps:\n  - name: dump\n    hosts: localhost\n    run: "
        + json.dumps(dump)
        + "\n    env:\n"
        + env_block
        + "\n"
    )
    (tmp_path / "rb.yml").write_text(text, encoding="utf-8")
    proc = apply(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads((tmp_path / "env.json").read_text(encoding="utf-8"))
    assert seen == {**ENV_VALUES, "RB_LITERAL": "plain text; with $dollar and 'quotes'"}
    assert not (tmp_path / "pwned").exists()


# -- nothing runs on bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    "last_step,extra,message",
    [
        (["hosts: localhost", "run: echo {{ undefined_thing }}"], [], "rb.yml:11:5: step 'last'"),
        (["hosts: no_such_group", "run: echo"], [], "unknown host or group 'no_such_group'"),
        (["hosts: localhost", "run: echo", "timeout: -1"], [], "rb.yml:12:5: step 'last'"),
        (["hosts: localhost", "run: echo {{ v }}"], ["-e", "novalue"], "-e 'novalue'"),
    ],
    ids=["undefined-var-in-last-step", "unknown-group", "schema", "bad-extra-var"],
)
def test_input_error_means_nothing_runs(tmp_path, last_step, extra, message):
    text = (
        "name: careful\n"  # line 1
        "steps:\n"
        "  - name: first\n"
        "    hosts: localhost\n"
        "    run: touch marker\n"  # line 5
        "  - name: second\n"
        "    hosts: localhost\n"
        "    run: touch marker2\n"
        "  - name: last\n"  # line 9
    ) + "".join(f"    {line}\n" for line in last_step)  # lines 10, 11, 12
    (tmp_path / "rb.yml").write_text(text)
    proc = apply(tmp_path, *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "marker").exists() and not (tmp_path / "marker2").exists()
    assert journal_runs(tmp_path) == []  # not even a journal


def test_undefined_name_in_until_is_caught_before_anything_runs(tmp_path):
    (tmp_path / "rb.yml").write_text(
        "name: until\n"
        "vars: {wanted: ready}\n"
        "steps:\n"
        "  - name: wait\n"
        "    hosts: localhost\n"
        "    run: touch marker; echo ready\n"
        "    until: no_such_name in stdout\n"  # line 7: a name defined nowhere
        "    retries: 1\n"
    )
    proc = apply(tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("rb.yml:7:5: step 'wait'"), proc.stderr
    assert not (tmp_path / "marker").exists()


def test_apply_without_yes_and_without_a_terminal_refuses(tmp_path):
    write(
        tmp_path,
        """
        name: needs yes
        steps:
          - name: first
            hosts: localhost
            run: touch marker
        """,
    )
    proc = runbook("apply", "rb.yml", cwd=tmp_path)  # stdin is /dev/null: no terminal
    assert proc.returncode == 2
    assert "--yes" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "marker").exists()
    assert journal_runs(tmp_path) == []


# -- output and journal ----------------------------------------------------------------------

REPORTING = (
    "name: reporting\n"
    + textwrap.dedent(FOUR_LOCAL).lstrip("\n")
    + """\
steps:
  - name: greet
    hosts: fleet
    serial: 2
    run: echo hello from {{ host.name }}; echo to stderr >&2
  - name: only h3
    hosts: fleet
    when: host.name == "h3"
    run: echo chosen
  - name: tolerated
    hosts: fleet
    on_failure: continue
    run: test {{ host.name }} != h4
  - name: wrap up
    local: true
    run: echo done
"""
)


def test_output_json_is_one_event_per_line(tmp_path):
    (tmp_path / "rb.yml").write_text(REPORTING)
    proc = apply(tmp_path, "--output", "json", "--forks", "4")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    evs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(e, dict) for e in evs)
    kinds = [e["event"] for e in evs]
    assert set(kinds) >= DOCUMENTED_EVENTS
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("run_started") == kinds.count("run_finished") == 1
    assert kinds.count("step_started") == kinds.count("step_finished") == 4
    assert len({e["run_id"] for e in evs}) == 1
    # 4 + 4 + 4 + 1 commands, each finished exactly once.
    res = results(proc.stdout)
    assert len(res) == 13
    assert res[("greet", "h2")]["stdout"] == "hello from h2\n"
    assert res[("greet", "h2")]["stderr"] == "to stderr\n"
    assert {h: res[("only h3", h)]["status"] for h in ("h1", "h2", "h3", "h4")} == {
        "h1": "skipped",
        "h2": "skipped",
        "h3": "ok",
        "h4": "skipped",
    }
    assert res[("tolerated", "h4")]["status"] == "failed"
    assert res[("wrap up", "localhost")]["stdout"] == "done\n"
    fin = evs[-1]
    assert fin["exit_code"] == 0 and fin["status"] == "completed"
    assert fin["counts"] == {
        "ok": 4 + 1 + 3 + 1,
        "failed": 1,
        "timed_out": 0,
        "unreachable": 0,
        "skipped": 3,
        "cancelled": 0,
        "rescued": 0,
    }
    # Events of one step come between its step_started and step_finished.
    start = kinds.index("step_started")
    end = kinds.index("step_finished")
    assert {e["step"] for e in evs[start : end + 1] if "step" in e} == {"greet"}


def test_journal_holds_the_plan_and_every_result(tmp_path):
    (tmp_path / "rb.yml").write_text(REPORTING)
    proc = apply(tmp_path, "--forks", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = journal_runs(tmp_path)
    run_id = run_dir.name
    # The recap names the run and where its journal is.
    assert f"run {run_id}" in proc.stdout
    assert f"journal: {run_dir}" in proc.stdout

    assert {p.name for p in run_dir.iterdir()} >= {"plan.json", "events.jsonl", "meta.json"}
    plan = json.loads((run_dir / "plan.json").read_text())
    plan.pop("secret_sources", None)
    # The journaled plan is the plan `runbook plan --format json` shows, with the runbook's
    # path made absolute (a resume may start from another directory).
    proc = runbook("plan", "rb.yml", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert plan.pop("source") == str(tmp_path / "rb.yml") and shown.pop("source") == "rb.yml"
    assert plan.pop("files") == [str(tmp_path / "rb.yml")] and shown.pop("files") == ["rb.yml"]
    assert plan == shown

    journal = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    done = [e for e in journal if e["event"] == "command_finished"]
    assert len(done) == 13
    assert {(e["step"], e["host"]) for e in done} == {
        (s["name"], c["host"]) for s in plan["steps"] for b in s["batches"] for c in b
    }
    greet = {e["host"]: e for e in done if e["step"] == "greet"}
    for host, e in greet.items():
        assert e["stdout"] == f"hello from {host}\n" and e["stderr"] == "to stderr\n"
        assert e["rc"] == 0 and e["status"] == "ok" and e["attempts"] == 1
        assert e["finished"] >= e["started"] > 0
    assert journal[-1]["event"] == "run_finished" and journal[-1]["exit_code"] == 0
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["run_id"] == run_id and meta["runbook"] == "reporting"


def test_retries_until_success_are_counted(tmp_path):
    write(
        tmp_path,
        """
        name: retry
        steps:
          - name: third time lucky
            hosts: localhost
            retries: 5
            delay: 0
            run: echo x >> tries; test $(wc -l < tries) -ge 3
        """,
    )
    proc = apply(tmp_path, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    r = results(proc.stdout)[("third time lucky", "localhost")]
    assert (r["status"], r["attempts"]) == ("ok", 3)
    assert (tmp_path / "tries").read_text() == "x\nx\nx\n"


# -- validate and plan ------------------------------------------------------------------------


def test_validate_and_plan_json(tmp_path):
    (tmp_path / "rb.yml").write_text(REPORTING)
    ok = runbook("validate", "rb.yml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "rb.yml: ok (4 steps, 5 hosts, 13 commands)\n"

    proc = runbook("plan", "rb.yml", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["format"] == "runbook-plan" and plan["runbook"] == "reporting"
    assert [s["name"] for s in plan["steps"]] == ["greet", "only h3", "tolerated", "wrap up"]
    greet = plan["steps"][0]
    assert [[c["host"] for c in b] for b in greet["batches"]] == [["h1", "h2"], ["h3", "h4"]]
    assert greet["batches"][0][0]["cmd"] == "echo hello from h1; echo to stderr >&2"
    # validate and plan run nothing and journal nothing.
    assert journal_runs(tmp_path) == []


def test_plan_text_is_deterministic(tmp_path):
    (tmp_path / "rb.yml").write_text(REPORTING)
    first = runbook("plan", "rb.yml", cwd=tmp_path)
    second = runbook("plan", "rb.yml", cwd=tmp_path, env={"PYTHONHASHSEED": "12345"})
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert "batch 2/2" in first.stdout and '(skipped: when: host.name == "h3")' in first.stdout
