"""Fitting the operator's world (issue 25, SPEC §13), through the CLI: Ansible Vault values
and files made by ``ansible-vault``, lookups, and ``diff --git`` executing nothing of the
revision it reviews."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import journal_dirs, runbook, write

VAULT = Path(__file__).parents[1] / "data" / "inventories" / "ansible" / "vault"
PLAINTEXTS = (
    "s3cret with spaces",
    "prod-api-key-0123456789",
    "bk-token-abcdef123",
    "host-only-secret-db2",
    "rel-key-9f8e7d",
)


@pytest.fixture
def vaulted(tmp_path: Path) -> Path:
    """The vault inventory (values and whole files made by ansible-vault) and a runbook
    that delivers every vaulted value into a file per host."""
    shutil.copytree(VAULT, tmp_path / "inv")
    out = tmp_path / "out"
    out.mkdir()
    write(
        tmp_path / "rb.yml",
        f"""\
name: vaulted
inventory: inv/hosts.ini
steps:
  - name: deliver
    hosts: db
    run: |
      printf '%s\\n' {{{{ db_password | quote }}}} {{{{ api_key | quote }}}} \\
        {{{{ backup_token | quote }}}} {{{{ db_user }}}} > {out}/{{{{ host.name }}}}
      echo "password is {{{{ db_password }}}}"
  - name: only db2 has one
    hosts: db2
    run: echo {{{{ db2_only | quote }}}} > {out}/db2-only
  - name: config file
    hosts: db
    copy: {{src: app.conf.j2, dest: "{out}/{{{{ host.name }}}}.conf", template: true}}
  - name: plain
    hosts: db
    run: echo {{{{ db_user }}}}
""",
    )
    write(tmp_path / "app.conf.j2", "user={{ db_user }}\npassword={{ db_password }}\n")
    return tmp_path


def ids(base: Path) -> list[str]:
    keys = base / "inv" / "keys"
    return ["--vault-password-file", str(keys / "vault-pass.txt"),
            "--vault-id", f"prod@{keys / 'prod-pass.txt'}"]  # fmt: skip


def assert_no_plaintext(text: str) -> None:
    for secret in PLAINTEXTS:
        assert secret not in text


def test_vaulted_group_vars_plan_masked_and_apply_delivered(vaulted: Path) -> None:
    rb = str(vaulted / "rb.yml")
    plan = runbook("plan", rb, *ids(vaulted), cwd=vaulted)
    assert plan.returncode == 0, plan.stderr
    assert "db1  $ printf '%s\\n' '********' '********' \\\n" in plan.stdout
    marks = "(secret: api_key (vaulted), backup_token (vaulted), db_password (vaulted))"
    assert f"    {marks}" in plan.stdout
    assert_no_plaintext(plan.stdout + plan.stderr)
    as_json = runbook("plan", "--format", "json", rb, *ids(vaulted), cwd=vaulted)
    assert as_json.returncode == 0 and '"secret": true' in as_json.stdout
    assert_no_plaintext(as_json.stdout)
    done = runbook("apply", "--yes", "-v", rb, *ids(vaulted), cwd=vaulted)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = ["s3cret with spaces 'and' quotes", "prod-api-key-0123456789", "bk-token-abcdef123"]
    for host in ("db1", "db2"):
        assert (vaulted / "out" / host).read_text().splitlines() == [*lines, "app"]
    assert (vaulted / "out" / "db2-only").read_text() == "host-only-secret-db2\n"
    conf = (vaulted / "out" / "db1.conf").read_text()
    assert conf == "user=app\npassword=s3cret with spaces 'and' quotes\n"
    assert "db1 | password is ********" in done.stdout
    assert_no_plaintext(done.stdout + done.stderr)
    (run_dir,) = journal_dirs(vaulted)
    for f in run_dir.iterdir():
        assert_no_plaintext(f.read_text())


def test_a_saved_plan_stores_envelopes_and_applies_with_the_passwords(vaulted: Path) -> None:
    rb, saved = str(vaulted / "rb.yml"), str(vaulted / "plan.json")
    made = runbook("plan", "--out", saved, rb, *ids(vaulted), cwd=vaulted)
    assert made.returncode == 0, made.stderr
    text = Path(saved).read_text()
    assert_no_plaintext(text)
    assert "$ANSIBLE_VAULT;1.2;AES256;prod" in text  # the stored form: still encrypted
    refused = runbook("apply", "--yes", saved, cwd=vaulted)
    assert refused.returncode == 2 and "no vault password is given" in refused.stderr
    assert not (vaulted / "out" / "db1").exists()
    done = runbook("apply", "--yes", saved, *ids(vaulted), cwd=vaulted)
    assert done.returncode == 0, done.stdout + done.stderr
    # backup_token, a value of a wholly encrypted file, was stored re-encrypted.
    assert (vaulted / "out" / "db1").read_text().splitlines() == [
        "s3cret with spaces 'and' quotes", "prod-api-key-0123456789", "bk-token-abcdef123", "app"
    ]  # fmt: skip


def test_without_a_password_exit_2_names_the_file_and_line(vaulted: Path) -> None:
    proc = runbook("apply", "--yes", str(vaulted / "rb.yml"), cwd=vaulted)
    assert proc.returncode == 2
    # The whole encrypted group_vars file is read with the inventory: it fails first.
    assert "inv/group_vars/all/backup.yml:1:1:" in proc.stderr
    assert "encrypted with ansible-vault and no vault password is given" in proc.stderr
    (vaulted / "inv" / "group_vars" / "all" / "backup.yml").unlink()
    proc = runbook("plan", str(vaulted / "rb.yml"), cwd=vaulted)
    assert proc.returncode == 2
    # The first value the step reads, by name: api_key, at its `!vault` tag.
    assert "inv/group_vars/db.yml:10:10: step 'deliver': host 'db1':" in proc.stderr
    assert "no vault password is given" in proc.stderr
    # A step that reads no vaulted value plans without any password (as Ansible).
    plain = runbook("plan", "--start-at", "plain", str(vaulted / "rb.yml"), cwd=vaulted)
    assert plain.returncode == 0, plain.stderr
    assert not list((vaulted / "out").iterdir())


def test_an_encrypted_vars_file_and_the_environment_password_file(tmp_path: Path) -> None:
    keys = VAULT / "keys"
    rb = write(
        tmp_path / "rb.yml",
        "name: release\nsteps:\n"
        "  - {name: sign, hosts: localhost, run: 'echo {{ release }} {{ release_key }}'}\n",
    )
    args = ("--vars-file", str(VAULT / "vars" / "release.yml"))
    proc = runbook("apply", "--yes", "-v", str(rb), *args, cwd=tmp_path)
    assert proc.returncode == 2 and "release.yml:1:1:" in proc.stderr
    env = {"RUNBOOK_VAULT_PASSWORD_FILE": str(keys / "prod-pass.txt")}  # a 1.2 file, prod
    plan = runbook("plan", str(rb), *args, cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr
    assert "$ echo ******** ********" in plan.stdout  # every value of the file is a secret
    done = runbook("apply", "--yes", "-v", str(rb), *args, cwd=tmp_path, env=env)
    assert done.returncode == 0 and "localhost | ******** ********" in done.stdout


def test_lookups_env_file_and_pipe(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    write(tmp_path / "inc" / "note.txt", "from the include's directory\n")
    write(tmp_path / "note.txt", "from the runbook's directory\n")
    write(
        tmp_path / "inc" / "steps.yml",
        "- {name: included, hosts: localhost, run: \"echo {{ lookup('file', 'note.txt') }}\"}\n",
    )
    rb = write(
        tmp_path / "rb.yml",
        """\
name: lookups
steps:
  - name: here
    hosts: localhost
    run: >-
      echo {{ lookup('env', 'LOOKUP_TEST') }} {{ lookup('file', 'note.txt') | quote }}
      {{ lookup('pipe', 'pwd') }}
      {{ lookup('ansible.builtin.pipe', 'printf "a\\\\nb\\\\n\\\\n"') | quote }}
  - include: inc/steps.yml
""",
    )
    plan = runbook("plan", "--format", "json", str(rb), cwd="/", env={"LOOKUP_TEST": "v1"})
    assert plan.returncode == 0, plan.stderr
    cmds = [c["cmd"] for s in json.loads(plan.stdout)["steps"] for b in s["batches"] for c in b]
    assert cmds == [
        f"echo v1 'from the runbook'\"'\"'s directory' {tmp_path} 'a\nb'",  # newlines off
        "echo from the include's directory",
    ]


def test_a_failing_pipe_lookup_is_exit_2_naming_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rb = write(
        tmp_path / "rb.yml",
        f"name: pipe\nsteps:\n  - {{name: first, hosts: localhost, run: touch {marker}}}\n"
        "  - name: second\n    hosts: localhost\n"
        "    run: \"echo {{ lookup('pipe', 'echo oops >&2; exit 4') }}\"\n",
    )
    proc = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert proc.returncode == 2
    assert "rb.yml:6:5: step 'second': host 'localhost':" in proc.stderr
    assert "lookup('pipe', 'echo oops >&2; exit 4') exited 4: oops" in proc.stderr
    assert not marker.exists()


def test_a_lookup_of_a_secrets_source_is_that_secret(tmp_path: Path) -> None:
    write(tmp_path / "token.txt", "tok-lookup-4242\n")
    rb = write(
        tmp_path / "rb.yml",
        """\
name: secret lookups
secrets:
  token: {file: token.txt}
  signed: {pipe: "echo sig-by-pipe-77"}
steps:
  - name: use
    hosts: localhost
    run: "echo {{ lookup('file', 'token.txt') }} {{ lookup('pipe', 'echo sig-by-pipe-77') }} > out"
""",
    )
    for fmt in ("text", "json"):
        plan = runbook("plan", "--format", fmt, str(rb), cwd=tmp_path)
        assert plan.returncode == 0, plan.stderr
        assert "tok-lookup" not in plan.stdout and "sig-by-pipe-77 >" not in plan.stdout
    assert "$ echo ******** ******** > out" in runbook("plan", str(rb), cwd=tmp_path).stdout
    done = runbook("apply", "--yes", "-v", str(rb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_text() == "tok-lookup-4242 sig-by-pipe-77\n"
    (run_dir,) = journal_dirs(tmp_path)
    assert "tok-lookup" not in (run_dir / "events.jsonl").read_text()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_diff_git_executes_nothing_of_the_revision(tmp_path: Path) -> None:
    """The old revision's inventory script writes a marker, and so does its pipe lookup:
    reviewing the change leaves no marker, unless the reviewer trusts the revision."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    script_marker, pipe_marker = tmp_path / "script-ran", tmp_path / "pipe-ran"
    script = write(
        repo / "inventory.py",
        f"#!/bin/sh\ntouch {script_marker}\n"
        'echo \'{"web": {"hosts": ["w1"]}, "_meta": {"hostvars": '
        '{"w1": {"ansible_connection": "local"}}}}\'\n',
    )
    script.chmod(0o755)
    write(
        repo / "rb.yml",
        "name: reviewed\ninventory: inventory.py\nsteps:\n  - name: s\n    hosts: all\n"
        f"    run: \"echo {{{{ lookup('pipe', 'touch {pipe_marker}; echo v1') }}}}\"\n",
    )
    git("add", "-A")
    git("commit", "-q", "-m", "old")
    write(repo / "hosts.ini", "[web]\nw1 ansible_connection=local\n")
    write(
        repo / "rb.yml",
        "name: reviewed\ninventory: hosts.ini\nsteps:\n  - {name: s, hosts: all, run: echo v2}\n",
    )
    git("rm", "-q", "inventory.py")
    git("add", "-A")
    git("commit", "-q", "-m", "new")

    proc = runbook("diff", "--git", "HEAD~1", "rb.yml", cwd=repo)
    assert proc.returncode == 2, proc.stdout
    assert "HEAD~1:inventory.py:1:1: inventory script not run" in proc.stderr
    assert "--trust-revision" in proc.stderr
    assert not script_marker.exists() and not pipe_marker.exists()
    # The revision's pipe lookup is refused too, once its inventory is not a script.
    write(repo / "hosts.ini", "[web]\nw1 ansible_connection=local\n")
    git("checkout", "HEAD~1", "--", "rb.yml")
    (repo / "rb.yml").write_text((repo / "rb.yml").read_text().replace("inventory.py", "hosts.ini"))
    git("add", "-A")
    git("commit", "-q", "-m", "pipe only")
    write(
        repo / "rb.yml",
        "name: reviewed\ninventory: hosts.ini\nsteps:\n  - {name: s, hosts: all, run: echo v2}\n",
    )
    proc = runbook("diff", "--git", "HEAD", "rb.yml", cwd=repo)
    assert proc.returncode == 2
    assert "HEAD:rb.yml:6:" in proc.stderr and "not run: runbook diff --git" in proc.stderr
    assert not pipe_marker.exists()
    trusted = runbook("diff", "--git", "HEAD~2", "--trust-revision", "rb.yml", cwd=repo)
    assert trusted.returncode == 1, trusted.stderr
    assert script_marker.exists() and pipe_marker.exists()


def test_diff_git_shows_nothing_of_the_controller_to_the_revision(tmp_path: Path) -> None:
    """A diff is posted where the change's author reads it: the revision's env lookups
    read nothing of the controller's environment (a CI token), and its file lookups stay
    inside the revision's tree, unless the reviewer trusts the revision."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    outside = write(tmp_path / "controller-only.txt", "not-for-the-author\n")
    write(repo / "notes.txt", "in-the-tree\n")
    write(repo / "rb.yml", "name: r\nsteps:\n  - {name: s, hosts: localhost, run: echo base}\n")
    git("add", "-A")
    git("commit", "-q", "-m", "base")
    write(  # the change under review: read the controller's secrets
        repo / "rb.yml",
        "name: r\nsteps:\n  - name: s\n    hosts: localhost\n"
        "    run: \"echo {{ lookup('env', 'CI_TOKEN') }} {{ lookup('file', 'notes.txt') }}\"\n",
    )
    git("add", "-A")
    git("commit", "-q", "-m", "change")
    git("checkout", "-q", "HEAD~1")  # a trusted checkout of the base; the change is REV
    env = {"CI_TOKEN": "tok-3141592653"}

    proc = runbook("diff", "--git", "main", "rb.yml", cwd=repo, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "tok-3141592653" not in proc.stdout
    assert "echo ******** in-the-tree" in proc.stdout  # in its own tree: read
    trusted = runbook("diff", "--git", "main", "--trust-revision", "rb.yml", cwd=repo, env=env)
    assert "echo tok-3141592653 in-the-tree" in trusted.stdout

    git("checkout", "-q", "main")
    write(
        repo / "rb.yml",
        "name: r\nsteps:\n  - name: s\n    hosts: localhost\n"
        f"    run: \"echo {{{{ lookup('file', '{outside}') }}}}\"\n",
    )
    git("commit", "-q", "-am", "reach outside")
    git("checkout", "-q", "HEAD~2")
    proc = runbook("diff", "--git", "main", "rb.yml", cwd=repo)
    assert proc.returncode == 2, proc.stdout
    assert "not read: it is outside the revision's tree" in proc.stderr
    assert "not-for-the-author" not in proc.stdout + proc.stderr
