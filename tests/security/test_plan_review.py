"""The text plan is what a reviewer approves: it shows per host everything that differs
between hosts, and masks rendered secret values, never literal runbook text (SPEC §6;
issue 24).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.helpers import events, runbook, write


def _lines_for(text: str, step: str) -> list[str]:
    """The lines of one step's section of a text plan."""
    section = text.split(f"] {step}    ", 1)[1]
    return section.split("\n\n", 1)[0].splitlines()[1:]


def test_an_inventory_become_user_gives_the_host_its_own_line(tmp_path: Path) -> None:
    """web02 runs as ``app``: ``web[01:02] $ id -un`` under ``become: root`` was a lie."""
    rb = write(
        tmp_path / "rb.yml",
        """\
name: become per host
hosts:
  web:
    hosts:
      web01: {address: 10.0.0.1}
      web02: {address: 10.0.0.2, vars: {ansible_become_user: app}}
  db:
    hosts:
      db1: {address: 10.0.1.1, vars: {ansible_become: yes}}
      db2: {address: 10.0.1.2}
steps:
  - name: who
    hosts: web
    become: true
    run: id -un
  - name: who on db
    hosts: db
    run: id -un
""",
    )
    done = runbook("plan", str(rb))
    assert done.returncode == 0, done.stderr
    who = _lines_for(done.stdout, "who")
    assert who[0].strip() == "timeout: 3600s"  # no "become: root" for both in the header
    assert [ln.split()[0] for ln in who[1:] if "$" in ln] == ["web01", "web02"]
    assert who[2].strip() == "become: root" and who[4].strip() == "become: app", who
    db = _lines_for(done.stdout, "who on db")
    assert db[1].startswith("    db1  $ id -un") and db[2].strip() == "become: root", db
    assert db[3].startswith("    db2  $ id -un") and len(db) == 4, db
    # The JSON plan said so all along: the text now agrees with it.
    data = json.loads(runbook("plan", "--format", "json", str(rb)).stdout)
    users = {c["host"]: c.get("become_user") for c in data["steps"][0]["batches"][0]}
    assert users == {"web01": None, "web02": "app"}


def test_hosts_whose_until_reads_different_values_are_not_folded(tmp_path: Path) -> None:
    rb = write(
        tmp_path / "rb.yml",
        """\
name: until per host
hosts:
  web:
    hosts:
      web01: {address: 10.0.0.1, vars: {want: ready}}
      web02: {address: 10.0.0.2, vars: {want: warming}}
steps:
  - name: wait
    hosts: web
    run: cache-state
    until: stdout == want
    retries: 3
""",
    )
    done = runbook("plan", str(rb))
    assert done.returncode == 0, done.stderr
    lines = _lines_for(done.stdout, "wait")
    assert any(ln.startswith("    web01  $ cache-state") for ln in lines), lines
    assert 'until reads: want="ready"' in done.stdout
    assert 'until reads: want="warming"' in done.stdout


SECRET_RUNBOOK = """\
name: literal text
hosts:
  web: [localhost]
secrets:
  pw: {{env: RB_REVIEW_SECRET}}
steps:
  - name: uses the secret
    hosts: web
    run: "echo {{{{ pw }}}}"
  - name: literal
    hosts: web
    confirm: "about to rm -rf {out}"
    run: "rm -rf {out}; echo done"
"""


def test_a_secret_equal_to_runbook_text_does_not_hide_that_text(tmp_path: Path) -> None:
    """``rm -rf X; echo done`` showed as ``********; echo done`` while it ran."""
    out = tmp_path / "data"
    rb = write(tmp_path / "rb.yml", SECRET_RUNBOOK.format(out=out))
    env = {"RB_REVIEW_SECRET": f"rm -rf {out}"}
    done = runbook("plan", str(rb), env=env)
    assert done.returncode == 0, done.stderr
    assert f"localhost  $ rm -rf {out}; echo done" in done.stdout
    assert f"confirm: about to rm -rf {out}" in done.stdout
    assert "localhost  $ echo ********" in done.stdout  # the rendered secret
    out.mkdir()
    applied = runbook("apply", "--yes", "--output", "json", str(rb), env=env)
    assert applied.returncode == 0, applied.stderr
    assert not out.exists()  # it ran what the plan showed
    # Output is still masked: the first command echoes the secret's value.
    results = {e["step"]: e for e in events(applied.stdout) if e["event"] == "command_finished"}
    assert results["uses the secret"]["stdout"] == "********\n"
