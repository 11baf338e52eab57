"""A secret reaches the command and no output surface: plan, console, events, journal."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.e2e.helpers import journal_dirs, runbook

SECRET = "hunter2 it's $ecret"


def test_secret_never_reaches_any_output_surface(tmp_path: Path) -> None:
    digest_file = tmp_path / "digest"
    secret_file = tmp_path / "api_key"
    secret_file.write_text("k3y-from-file-0042\n")
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: secrets
hosts:
  local: [localhost]
secrets:
  db_password: {{env: TEST_DB_PASSWORD}}
  api_key: {{file: api_key}}
env:
  PGPASSWORD: "{{{{ db_password }}}}"
steps:
  - name: use it
    hosts: local
    confirm: "about to use {{{{ db_password }}}}"
    run: |
      printf '%s' "$PGPASSWORD" | sha256sum | cut -d' ' -f1 > {digest_file}
      echo password is {{{{ db_password | quote }}}} and key {{{{ api_key | quote }}}}
      echo "on stderr: $PGPASSWORD" >&2
  - name: fail loudly
    hosts: local
    on_failure: continue
    run: echo "failing with {{{{ db_password | quote }}}}"; false
""")
    env = {"TEST_DB_PASSWORD": SECRET}
    outputs = []
    for args in (
        ("validate", str(rb)),
        ("plan", str(rb)),
        ("plan", str(rb), "--format", "json"),
        ("plan", str(rb), "--out", str(tmp_path / "plan.json")),
        ("apply", str(rb), "--yes", "-v"),
        ("apply", str(rb), "--yes", "--output", "json"),
    ):
        proc = runbook(*args, env=env, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        outputs.append(proc.stdout + proc.stderr)
    # The command did receive the exact value.
    assert digest_file.read_text().strip() == hashlib.sha256(SECRET.encode()).hexdigest()
    run_ids = [d.name for d in journal_dirs(tmp_path)]
    assert len(run_ids) == 2
    for run_id in run_ids:
        for extra in ((), ("--host", "localhost", "--step", "use it")):
            proc = runbook("show", run_id, str(rb), *extra, cwd=tmp_path)
            assert proc.returncode == 0
            outputs.append(proc.stdout)
    outputs.append(runbook("runs", str(rb)).stdout)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "api_key"]
    outputs += [p.read_text(errors="replace") for p in files if p != digest_file]
    # The masked form shows where the secret was used, so the check above is not vacuous.
    assert any("password is ********" in text for text in outputs)
    for text in outputs:
        for needle in ("hunter2", "$ecret", "k3y-from-file-0042"):
            assert needle not in text


def test_missing_secret_is_an_input_error_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: secrets
hosts:
  local: [localhost]
secrets:
  db_password: {{env: TEST_UNSET_PASSWORD}}
steps:
  - name: one
    hosts: local
    run: touch {marker}
""")
    proc = runbook("apply", str(rb), "--yes", env={"TEST_UNSET_PASSWORD": ""})
    assert proc.returncode == 2
    assert "rb.yml:5:3" in proc.stderr and "db_password" in proc.stderr
    assert not marker.exists()
