"""``runbook diff`` as a reviewer runs it: two files, a saved plan, or a file against a
git revision of its own repository (includes and inventory from that revision too)."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import ROOT, runbook, write

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

RUNBOOK = """\
name: shop
inventory: inventory.ini
vars: {release: "1.0"}
steps:
  - include: common/preflight.yml
  - name: Find the primary
    hosts: db
    run: cat /var/lib/role
    register: role
  - name: Deploy
    hosts: web
    serial: 2
    run: deploy --release {{ release }} --primary {{ role.stdout }}
  - name: Mark
    hosts: db
    run: touch {{ marker }}
"""
PREFLIGHT = """\
- name: Preflight
  hosts: all
  run: check-disk --min 10G
"""
INVENTORY = "[web]\nweb1\nweb2\nweb3\nweb4\n\n[db]\ndb1\n"


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    return proc.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose one commit holds a runbook, its include and its inventory."""
    root = tmp_path / "repo"
    (root / "ops" / "common").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "CI")
    write(root / "ops" / "shop.yml", RUNBOOK.replace("{{ marker }}", str(tmp_path / "marker")))
    write(root / "ops" / "common" / "preflight.yml", PREFLIGHT)
    write(root / "ops" / "inventory.ini", INVENTORY)
    commit(root, "first")
    return root


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def diff_json(*args: str, cwd: Path, env: dict[str, str] | None = None) -> dict:
    proc = runbook("diff", *args, "--format", "json", cwd=cwd, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    assert data["changed"] is (proc.returncode == 1)
    return data


def steps_of(data: dict) -> dict[str, dict]:
    return {s["name"]: s for top in data["steps"] for s in (top, *top.get("steps", []))}


def test_git_batch_size_change_against_head_then_head_1(repo: Path):
    rb = repo / "ops" / "shop.yml"
    edit(rb, "serial: 2", "serial: 3")
    proc = runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("--- HEAD:ops/shop.yml\n+++ ops/shop.yml\n")
    data = diff_json("--git", "HEAD", "ops/shop.yml", cwd=repo)
    assert list(steps_of(data)) == ["Deploy"]
    deploy = steps_of(data)["Deploy"]
    assert [c["name"] for c in deploy["settings"]] == ["serial", "batches"]
    assert deploy["commands"] == []

    commit(repo, "bigger batches")
    assert runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo).returncode == 0
    again = diff_json("--git", "HEAD~1", "ops/shop.yml", cwd=repo)
    assert again["old"] == "HEAD~1:ops/shop.yml"
    assert again["steps"] == data["steps"]


def test_git_old_side_reads_the_revisions_include_and_inventory(repo: Path):
    """Only the include and the inventory change: the runbook itself is the same file."""
    edit(repo / "ops" / "common" / "preflight.yml", "--min 10G", "--min 20G")
    edit(repo / "ops" / "inventory.ini", "web4\n", "web4\nweb5\n")
    commit(repo, "more disk, one more web host")
    data = diff_json("--git", "HEAD~1", "shop.yml", cwd=repo / "ops")  # from a subdirectory
    steps = steps_of(data)
    pre = steps["Preflight"]["commands"]
    changed = [c for c in pre if c["change"] == "changed"]
    assert [c["label"] for c in changed] == ["web[1:4], db1"]
    assert changed[0]["details"][0] == {
        "name": "cmd",
        "change": "changed",
        "old": "check-disk --min 10G",
        "new": "check-disk --min 20G",
    }
    assert steps["Deploy"]["hosts_added"] == ["web5"]
    assert steps["Preflight"]["hosts_added"] == ["web5"]
    # From outside the repository, by absolute path: the same diff.
    elsewhere = diff_json("--git", "HEAD~1", str(repo / "ops" / "shop.yml"), cwd=repo.parent)
    assert elsewhere["steps"] == data["steps"]


def test_a_changed_deferred_template(repo: Path):
    edit(repo / "ops" / "shop.yml", "{{ role.stdout }}", "{{ role.stdout | trim }}")
    proc = runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    # Rendered but for the part that reads the register (SPEC §12).
    assert "- $ deploy --release 1.0 --primary {{ role.stdout }}\n" in proc.stdout
    assert "+ $ deploy --release 1.0 --primary {{ role.stdout | trim }}\n" in proc.stdout
    assert "Preflight" not in proc.stdout and "Find the primary" not in proc.stdout


def test_bad_input_on_either_side_is_exit_2_naming_file_and_line(repo: Path, tmp_path: Path):
    rb = repo / "ops" / "shop.yml"
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    edit(rb, "--release {{ release }}", "--release {{ releas }}")
    proc = runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("ops/shop.yml:13:5: step 'Deploy'"), proc.stderr
    assert "'releas' is undefined" in proc.stderr

    commit(repo, "broken")
    edit(rb, "{{ releas }}", "{{ release }}")  # fixed in the working copy only
    proc = runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("HEAD:ops/shop.yml:13:5: step 'Deploy'"), proc.stderr
    assert "runbook-diff-" not in proc.stderr  # the temp copy is never named ...
    assert list(tmp.iterdir()) == []  # ... and is gone

    edit(repo / "ops" / "common" / "preflight.yml", "hosts: all", "hosts: [all")
    proc = runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("HEAD:ops/shop.yml:13:5:")
    assert "ops/common/preflight.yml:3:6: YAML syntax error" in lines[1]
    assert not lines[1].startswith("HEAD:")
    assert len(lines) == 2  # both sides, old first

    commit(repo, "broken include")
    git(repo, "checkout", "HEAD~2", "--", "ops")  # the working copy as it first was
    proc = runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("HEAD:ops/common/preflight.yml:3:6: YAML syntax error"), (
        proc.stderr
    )
    assert runbook("diff", "--git", "HEAD~2", "ops/shop.yml", cwd=repo).returncode == 0
    assert not (tmp_path / "marker").exists()  # nothing ran
    assert not (repo / "ops" / ".runbook").exists()


def test_bad_usage_is_exit_2(repo: Path):
    for args in (["ops/shop.yml"], ["--git", "HEAD", "ops/shop.yml", "ops/shop.yml"]):
        proc = runbook("diff", *args, cwd=repo)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    proc = runbook("diff", "--git", "no-such-rev", "ops/shop.yml", cwd=repo)
    assert proc.returncode == 2
    assert "--git no-such-rev: not a revision" in proc.stderr
    proc = runbook("diff", "--git", "--output=/tmp/x", "ops/shop.yml", cwd=repo)
    assert proc.returncode == 2  # a revision is never taken for an option of git
    write(repo / "ops" / "new.yml", "name: new\nsteps: [{name: s, hosts: db, run: x}]\n")
    proc = runbook("diff", "--git", "HEAD", "ops/new.yml", cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr.startswith("HEAD:ops/new.yml: cannot read"), proc.stderr
    outside = repo.parent / "outside.yml"
    write(outside, "name: x\nsteps: [{name: s, hosts: localhost, run: x}]\n")
    proc = runbook("diff", "--git", "HEAD", str(outside), cwd=repo)
    assert proc.returncode == 2 and "not in a git repository" in proc.stderr


def test_options_apply_to_both_sides(repo: Path):
    rb = repo / "ops" / "shop.yml"
    edit(rb, 'vars: {release: "1.0"}\n', "")
    commit(repo, "release from the command line")
    edit(rb, "run: cat /var/lib/role", "run: cat /var/lib/pg/role")
    edit(repo / "ops" / "common" / "preflight.yml", "check-disk", "check-disk -v")
    # Without -e neither side plans; with it both do, and only the edits show.
    assert runbook("diff", "--git", "HEAD", "ops/shop.yml", cwd=repo).returncode == 2
    data = diff_json("--git", "HEAD", "ops/shop.yml", "-e", "release=2", cwd=repo)
    assert list(steps_of(data)) == ["Preflight", "Find the primary"]
    limited = diff_json(
        "--git", "HEAD", "ops/shop.yml", "-e", "release=2", "--limit", "web1", cwd=repo
    )
    assert list(steps_of(limited)) == ["Preflight"]
    assert [c["label"] for c in steps_of(limited)["Preflight"]["commands"]] == ["web1"]


# -- saved plans and secrets ----------------------------------------------------------------

SECRET_RUNBOOK = """\
name: secret
hosts:
  db: [db1, db2]
secrets:
  pw: {env: DIFF_E2E_PW}
  key: {file: key.txt}
steps:
  - name: Login
    hosts: db
    run: psql "password={{ pw }}" -c 'select 1'
    env: {KEY: "{{ key }}"}
"""


def test_a_saved_plan_against_its_runbook(tmp_path: Path):
    rb = write(tmp_path / "rb.yml", SECRET_RUNBOOK)
    write(tmp_path / "key.txt", "old-key-value-1\n")
    env = {"DIFF_E2E_PW": "old-password-1"}
    saved = runbook("plan", "rb.yml", "--out", "plan.json", cwd=tmp_path, env=env)
    assert saved.returncode == 0, saved.stderr
    assert runbook("diff", "plan.json", "rb.yml", cwd=tmp_path, env=env).returncode == 0

    # New secret values (or none at all: the diff never reads them) change nothing.
    write(tmp_path / "key.txt", "new-key-value-2\n")
    with _without("DIFF_E2E_PW"):
        cases = [({"DIFF_E2E_PW": "new-password-2"}, fmt) for fmt in ("text", "json", "markdown")]
        for env2, fmt in [*cases, ({}, "text")]:
            proc = runbook("diff", "plan.json", "rb.yml", "--format", fmt, cwd=tmp_path, env=env2)
            assert proc.returncode == 0, proc.stderr
            for value in ("old-password-1", "new-password-2", "old-key-value-1", "new-key-value-2"):
                assert value not in proc.stdout + proc.stderr

    edit(rb, "select 1", "select 2")
    proc = runbook("diff", "plan.json", "rb.yml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "- $ psql \"password=********\" -c 'select 1'\n" in proc.stdout
    assert "+ $ psql \"password=********\" -c 'select 2'\n" in proc.stdout
    reverse = runbook("diff", "rb.yml", "plan.json", cwd=tmp_path)
    assert "- $ psql \"password=********\" -c 'select 2'\n" in reverse.stdout

    # A saved plan is never rendered again: -e cannot apply to it (exit 2), --limit can.
    proc = runbook("diff", "plan.json", "rb.yml", "-e", "x=1", cwd=tmp_path)
    assert proc.returncode == 2 and "saved plan plan.json" in proc.stderr
    data = diff_json("plan.json", "rb.yml", "--limit", "db2", cwd=tmp_path)
    assert [c["hosts"] for c in data["steps"][0]["commands"]] == [["db2"]]


def test_a_secret_file_whose_value_changed_in_git(repo: Path):
    write(repo / "ops" / "secret.yml", SECRET_RUNBOOK)
    write(repo / "ops" / "key.txt", "committed-key-value-1")
    commit(repo, "secret runbook")
    write(repo / "ops" / "key.txt", "working-key-value-2")
    for fmt in ("text", "json", "markdown"):
        proc = runbook("diff", "--git", "HEAD", "ops/secret.yml", "--format", fmt, cwd=repo)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout + proc.stderr
        assert "key-value" not in out


# -- the acceptance case ------------------------------------------------------------------------


def test_cluster_restart_batch_size_change_is_exactly_the_batch_change(tmp_path: Path):
    """The repository's own playbook: a commit that changes only its ``serial``."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "playbooks", repo / "playbooks")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    commit(repo, "the playbook as it is")
    edit(repo / "playbooks" / "cluster-restart.yml", "    serial: 2\n", "    serial: 3\n")
    commit(repo, "restart three segment hosts at a time")
    args = ("diff", "--git", "HEAD~1", "playbooks/cluster-restart.yml")
    with _without("CLUSTER_HEALTH_PASSWORD"):  # its secret: the diff needs no value
        data = diff_json(*args[1:], cwd=repo)
        text = runbook(*args, cwd=repo)
    assert text.returncode == 1, text.stderr
    assert (data["plan"], data["hosts"]) == ([], [])
    (step,) = data["steps"]
    assert step["name"] == "Restart segments, two hosts at a time"
    assert (step["status"], step["moved"], step["commands"]) == ("changed", False, [])
    serial, batches = step["settings"]
    assert (serial["name"], serial["old"], serial["new"]) == ("serial", 2, 3)
    assert batches["name"] == "batches"
    assert [len(b) for b in batches["old"]] == [2, 2, 2, 2]
    assert [len(b) for b in batches["new"]] == [3, 3, 2]
    assert data["summary"]["hosts_affected"] == [f"sdw{i}" for i in range(1, 9)]
    heads = [ln for ln in text.stdout.splitlines() if ln[:2] in ("~ ", "+ ", "- ")]
    assert heads == ["~ [2] Restart segments, two hosts at a time"]


class _without:
    """The environment of this process (so of the CLI it starts) without one variable."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.saved: str | None = None

    def __enter__(self) -> None:
        self.saved = os.environ.pop(self.name, None)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.environ[self.name] = self.saved


# -- formats ------------------------------------------------------------------------------


def test_markdown_and_json_from_the_cli(repo: Path):
    edit(repo / "ops" / "shop.yml", "serial: 2", "serial: 3")
    md = runbook("diff", "--git", "HEAD", "ops/shop.yml", "--format", "markdown", cwd=repo)
    assert md.returncode == 1, md.stderr
    assert md.stdout.startswith("## runbook diff\n\n**1 step changed; 4 hosts affected**\n")
    assert "| serial | `2` | `3` |" in md.stdout
    same = runbook("diff", "--git", "HEAD", "ops/shop.yml", "--format", "markdown", cwd=repo)
    assert same.stdout == md.stdout


def _on_pty(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    return out.decode()


def test_colour_on_a_terminal_unless_no_color(repo: Path):
    edit(repo / "ops" / "shop.yml", "serial: 2", "serial: 3")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"PYTHONPATH": path}
    args = ["diff", "--git", "HEAD", "ops/shop.yml"]
    assert re.search(r"\x1b\[[0-9;]*m~ \[3\] Deploy", _on_pty(args, repo, env))
    assert "\x1b[" not in _on_pty(args, repo, {**env, "NO_COLOR": "1"})
    piped = runbook(*args, cwd=repo, env={"NO_COLOR": ""})
    assert "\x1b[" not in piped.stdout  # not a terminal


@pytest.mark.parametrize("playbook", sorted(p.name for p in (ROOT / "playbooks").glob("*.yml")))
def test_a_playbook_and_its_copy_elsewhere_have_no_differences(
    tmp_path: Path, playbook: str
) -> None:
    """As with --git, the two sides sit at different paths: nothing that only says where a
    template is written (a confirm's, a step's) may show as a change."""
    for side in ("old", "new"):
        shutil.copytree(ROOT / "playbooks", tmp_path / side)
    done = runbook("diff", str(tmp_path / "old" / playbook), str(tmp_path / "new" / playbook))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no differences" in done.stdout
