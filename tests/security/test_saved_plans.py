"""Saved plans (``plan --out``, ``apply PLAN.json``): input to distrust, secrets left out
(SPEC §4, §6, §8; issue 12 item 9).

A saved plan is reviewed, then applied later — perhaps after hand edits or damage. A
malformed one is refused like any bad input: exit 2, one line, no traceback, nothing run
and no journal. A good one applies from any directory, journals beside its runbook, and
holds secrets only as templates: they are read again when it is applied.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runbook.plan.saved import plan_digest
from tests.e2e.helpers import journal_dirs, runbook, write

SECRET_ENV = "RB_SAVED_SECRET"

RUNBOOK = """\
name: saved
hosts:
  local: [localhost]
secrets:
  pw: {env: RB_SAVED_SECRET}
env:
  APP: plain
steps:
  - name: one
    hosts: local
    timeout: 30
    run: touch ran-one
  - name: two
    hosts: local
    env:
      TOKEN: "{{ pw }}"
    run: printf '%s' {{ pw | quote }} | sha256sum > ran-two
"""

Plan = dict[str, Any]


def cmd(plan: Plan, step: int) -> dict[str, Any]:
    return plan["steps"][step]["batches"][0][0]


def edit(**changes: Any) -> Callable[[Plan], None]:
    """Set top-level fields of the plan."""
    return lambda plan: plan.update(changes)


def edit_cmd(step: int, **changes: Any) -> Callable[[Plan], None]:
    return lambda plan: cmd(plan, step).update(changes)


def drop(*path: str | int) -> Callable[[Plan], None]:
    def go(plan: Plan) -> None:
        node: Any = plan
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return go


def edit_templates(**changes: Any) -> Callable[[Plan], None]:
    return lambda plan: cmd(plan, 1)["templates"].update(changes)


def nested(depth: int) -> Callable[[Plan], str]:
    """The plan's text with one more top-level field, ``depth`` lists deep."""
    return lambda plan: json.dumps(plan)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"


# name → (edit in place, or return the file's text; text the one-line error must hold)
MALFORMED: dict[str, tuple[Callable[[Plan], str | None], str]] = {
    "timeout-not-a-number": (edit_cmd(0, timeout="abc"), "timeout: 'abc' is not of type"),
    "timeout-nan": (edit_cmd(0, timeout=float("nan")), "timeout: nan is not a finite number"),
    "delay-nan": (edit_cmd(0, delay=float("nan")), "delay: nan is not a finite number"),
    "timeout-infinite": (edit_cmd(0, timeout=float("inf")), "greater than the maximum"),
    "secret-source-unknown-kind": (
        edit(secret_sources={"pw": {"command": "cat /etc/shadow"}}),
        "secret_sources/pw",
    ),
    "secret-source-not-a-mapping": (edit(secret_sources={"pw": SECRET_ENV}), "secret_sources/pw"),
    "secret-source-two-kinds": (
        edit(secret_sources={"pw": {"env": SECRET_ENV, "file": "x"}}),
        "secret_sources/pw",
    ),
    "secret-source-bad-name": (
        edit(secret_sources={"p w": {"env": SECRET_ENV}}),
        "secret_sources",
    ),
    "secret-read-but-not-sourced": (
        edit_templates(secrets=["other"]),
        "reads secret 'other'",
    ),
    # An env name is written unquoted (`export NAME=...`): it must not run as shell.
    "env-name-is-shell": (edit_cmd(0, env={"A;touch X": "1"}), "'A;touch X' does not match"),
    "template-env-name-is-shell": (
        edit_templates(env=[["A;touch X", "1"]]),
        "'A;touch X' does not match",
    ),
    "missing-cmd": (drop("steps", 0, "batches", 0, 0, "cmd"), "'cmd' is a required property"),
    "missing-hosts": (drop("hosts"), "'hosts' is a required property"),
    "missing-step-name": (drop("steps", 0, "name"), "'name' is a required property"),
    "unknown-host": (edit_cmd(0, host="nosuchhost"), "nosuchhost"),
    "version-1": (edit(version=1), "v1 file; this runbook reads v2"),
    "version-3": (edit(version=3), "v3 file; this runbook reads v2"),
    # A value a thousand lists deep: Python's JSON decoder recurses (RecursionError).
    "nested-1000": (nested(1000), "nested too deeply"),
    # Issue 24: a hand-edited plan ran without a word. The cases above carry a digest
    # made again after the edit (a tool's plan, say), to reach the checks behind it.
    "hand-edited": (edit_cmd(0, cmd="touch ran-edited"), "does not match its plan_digest"),
    "digest-removed": (drop("plan_digest"), "has no plan_digest"),
    # One key twice: the reader of the file sees the first, json.load keeps the last.
    "duplicate-key": (
        lambda plan: json.dumps(plan).replace('"cmd": ', '"cmd": "true", "cmd": ', 1),
        "appears twice",
    ),
}
# Edits the refusal is about: the digest is not made again.
HAND_EDITED = {"hand-edited", "digest-removed"}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Plan]:
    root = tmp_path_factory.mktemp("saved")
    rb = write(root / "rb.yml", RUNBOOK)
    done = runbook("plan", "--out", str(root / "plan.json"), str(rb), env={SECRET_ENV: "v"})
    assert done.returncode == 0, done.stderr
    return root, json.loads((root / "plan.json").read_text())


@pytest.fixture(scope="module")
def refusals(base: tuple[Path, Plan], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every malformed plan applied once, side by side, each in a directory of its own
    (its runbook beside it: the journal would land there)."""
    root, plan = base

    def apply(name: str) -> tuple[Any, Path]:
        cwd = tmp_path_factory.mktemp(name)
        shutil.copy(root / "rb.yml", cwd / "rb.yml")
        bad = copy.deepcopy(plan)
        text = MALFORMED[name][0](bad)
        if name not in HAND_EDITED:
            bad["plan_digest"] = plan_digest(bad)
        # (json.dumps writes NaN and Infinity, as Python's reader takes them.)
        (cwd / "plan.json").write_text(json.dumps(bad) if text is None else text)
        proc = runbook("apply", "--yes", "plan.json", cwd=cwd, env={SECRET_ENV: "v"})
        return proc, cwd

    with ThreadPoolExecutor(6) as pool:
        return dict(zip(MALFORMED, pool.map(apply, MALFORMED), strict=True))


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_saved_plan_is_refused_before_anything_runs(name: str, refusals: dict) -> None:
    proc, cwd = refusals[name]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert MALFORMED[name][1] in lines[0], lines[0]
    assert lines[0].startswith("plan.json: ") or "rb.yml" in lines[0], lines[0]
    assert sorted(p.name for p in cwd.iterdir()) == ["plan.json", "rb.yml"], "something ran"


def test_a_saved_plan_whose_until_does_not_parse_is_refused(
    base: tuple[Path, Plan], tmp_path: Path
) -> None:
    """Planning from the runbook checks the syntax (planner.check_syntax); a saved plan
    ran the command, then failed it on the until."""
    root, plan = base
    shutil.copy(root / "rb.yml", tmp_path / "rb.yml")
    bad = copy.deepcopy(plan)
    cmd(bad, 0)["until"] = "rc =="
    bad["plan_digest"] = plan_digest(bad)
    write(tmp_path / "plan.json", json.dumps(bad))
    proc = runbook("apply", "--yes", "plan.json", cwd=tmp_path, env={SECRET_ENV: "v"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "step 'one': host 'localhost': template syntax" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not (tmp_path / "ran-one").exists() and journal_dirs(tmp_path) == []


def test_a_saved_plan_applies_from_anywhere_and_journals_beside_its_runbook(
    tmp_path: Path,
) -> None:
    project, plans, elsewhere = tmp_path / "project", tmp_path / "plans", tmp_path / "elsewhere"
    for d in (project, plans, elsewhere):
        d.mkdir()
    rb = write(project / "rb.yml", RUNBOOK.replace("ran-", f"{elsewhere}/ran-"))
    plan = plans / "reviewed.json"
    env = {SECRET_ENV: "v"}
    done = runbook("plan", "--out", str(plan), str(rb), cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(plan.read_text())["source"] == "../project/rb.yml"
    applied = runbook("apply", "--yes", str(plan), cwd=elsewhere, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (elsewhere / "ran-one").exists() and (elsewhere / "ran-two").exists()
    (run,) = journal_dirs(project)
    assert str(run) in applied.stdout
    assert not (elsewhere / ".runbook").exists() and not (plans / ".runbook").exists()
    # `runs` and `show` find it through the runbook, from anywhere too.
    listed = runbook("runs", str(rb), cwd=elsewhere)
    assert run.name in listed.stdout


def test_a_saved_plan_holds_no_secret_and_reads_it_again_at_apply(tmp_path: Path) -> None:
    planned_with, applied_with = "plan-time 'Va1ue\" x", "apply-time 'Va2ue\" y"
    secret_file = write(tmp_path / "key.txt", "f1le-Secret-Va1ue\n")
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: saved secret
hosts:
  local: [localhost]
secrets:
  pw: {{env: {SECRET_ENV}}}
  key: {{file: key.txt}}
env:
  PGPASSWORD: "{{{{ pw }}}}"
steps:
  - name: use
    hosts: local
    env:
      DSN: "password={{{{ pw | urlencode }}}} key={{{{ key | tojson }}}}"
    run: |
      printf '%s' "$PGPASSWORD" | sha256sum > {tmp_path}/sum-env
      printf '%s' {{{{ key | quote }}}} | sha256sum > {tmp_path}/sum-key
      printf '%s' "$DSN" | sha256sum > {tmp_path}/sum-dsn
""",
    )
    plan = tmp_path / "plan.json"
    done = runbook(
        "plan", "--out", str(plan), str(rb), cwd=tmp_path, env={SECRET_ENV: planned_with}
    )
    assert done.returncode == 0, done.stderr
    text = plan.read_text()
    for value in (planned_with, "f1le-Secret-Va1ue"):
        for form in (value, shlex.quote(value), json.dumps(value)[1:-1], "Va1ue"):
            assert form not in text, form
    saved = json.loads(text)
    command = cmd(saved, 0)
    assert command["secret"] is True
    assert "{{ pw }}" in json.dumps(command["templates"])
    assert saved["secret_sources"] == {
        "pw": {"env": SECRET_ENV},
        "key": {"file": str(secret_file)},
    }
    # Without the secret, nothing runs.
    missing = runbook("apply", "--yes", str(plan), cwd=tmp_path)
    assert missing.returncode == 2 and SECRET_ENV in missing.stderr, missing.stderr
    assert not (tmp_path / "sum-env").exists()
    # It is read again now: the new values arrive, the old ones are gone.
    secret_file.write_text("f1le-Secret-Va2ue\n")
    applied = runbook("apply", "--yes", str(plan), cwd=tmp_path, env={SECRET_ENV: applied_with})
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def got(name: str) -> str:
        return (tmp_path / name).read_text().split()[0]

    dsn = f"password={_urlencode(applied_with)} key={json.dumps('f1le-Secret-Va2ue')}"
    assert got("sum-env") == sha(applied_with)
    assert got("sum-key") == sha("f1le-Secret-Va2ue")
    assert got("sum-dsn") == sha(dsn)


def _urlencode(value: str) -> str:
    import jinja2

    return jinja2.Environment().from_string("{{ v | urlencode }}").render(v=value)


def test_the_digest_is_of_the_content_not_the_layout(
    base: tuple[Path, Plan], tmp_path: Path
) -> None:
    """Re-indenting or reordering a saved plan keeps it applicable; the digest is the one
    ``plan_digest`` documents (anyone can compute it the same way)."""
    root, plan = base
    assert plan["plan_digest"] == plan_digest(plan)
    assert plan_digest({**plan, "plan_digest": "x"}) == plan["plan_digest"]  # itself left out
    shutil.copy(root / "rb.yml", tmp_path / "rb.yml")
    reordered = dict(reversed(list(plan.items())))
    write(tmp_path / "plan.json", json.dumps(reordered, indent=7, ensure_ascii=True))
    proc = runbook("apply", "--yes", "plan.json", cwd=tmp_path, env={SECRET_ENV: "v"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ran-one").exists()
