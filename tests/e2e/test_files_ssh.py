"""``copy`` and ``fetch`` through the CLI against real sshd hosts (the shared fleet).

Fleet hosts are this machine, so "remote" paths are directories of this test; a host's
files are checked byte for byte here. ``become`` runs ``sudo`` for real: to root and to
``nobody`` (whose directory must be one ``nobody`` can reach: not under 0700 tmp_path).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import NOBODY, events, finished, journal_dirs, runbook
from tests.fleet import Fleet

pytestmark = pytest.mark.ssh

HOSTS = ["h1", "h2", "h3"]
SECRET = "tls-s3cret-Value-91"  # a template reads it: only the file may hold it


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def private_uploads() -> set[str]:
    return set(glob.glob("/var/tmp/.runbook-*")) | set(glob.glob("/tmp/.runbook-*"))


def apply(rb: Path, fleet: Fleet, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = runbook(
        "apply",
        str(rb),
        "--yes",
        "--ssh-config",
        str(fleet.ssh_config),
        *extra,
        cwd=rb.parent,
        env={"TEST_FILES_SECRET": SECRET},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


RUNBOOK = """
name: files over ssh
hosts:
  fleet: [h1, h2, h3]
secrets:
  token: {env: TEST_FILES_SECRET}
steps:
  - name: plain
    hosts: fleet
    copy: {src: files/plain.txt, dest: "REMOTE/{{ host.name }}.txt", mode: "0640"}
  - name: binary
    hosts: fleet
    copy: {src: files/blob.bin, dest: "REMOTE/{{ host.name }}.bin"}
  - name: config
    hosts: fleet
    copy: {src: files/app.conf.j2, dest: "REMOTE/{{ host.name }}.conf", template: true}
    register: cfg
  - name: as root
    hosts: fleet
    become: true
    copy:
      src: files/app.conf.j2
      dest: "REMOTE/{{ host.name }}.root.conf"
      template: true
      mode: "0600"
      owner: nobody
      group: nogroup
  - name: as nobody
    hosts: fleet
    become: true
    become_user: nobody
    copy: {src: files/blob.bin, dest: "REMOTE/nobody/{{ host.name }}.bin", mode: "0604"}
  - name: reload
    hosts: fleet
    when: cfg.changed
    run: echo reloaded >> REMOTE/{{ host.name }}.reloads
  - name: collect
    hosts: fleet
    fetch: {src: "REMOTE/{{ host.name }}.txt", dest: "fetched/{{ host.name }}.txt"}
  - name: collect as nobody
    hosts: fleet
    become: true
    become_user: nobody
    fetch: {src: "REMOTE/nobody/{{ host.name }}.bin", dest: "fetched/{{ host.name }}.bin"}
"""


def assert_events_valid(stdout: str) -> None:
    from jsonschema import Draft202012Validator

    from runbook.load.loader import schema

    validator = Draft202012Validator(schema("events"))
    for event in events(stdout):
        assert not list(validator.iter_errors(event)), event


def make_runbook(base: Path, remote: Path) -> Path:
    files = base / "files"
    files.mkdir()
    (files / "plain.txt").write_text("plain text\n")
    blob = os.urandom(1 << 20) + b"\0\0NUL\r\nCRLF\r\n\x00end"
    (files / "blob.bin").write_bytes(blob)
    (files / "app.conf.j2").write_text("host = {{ host.name }}\ntoken = {{ token }}\n")
    rb = base / "rb.yml"
    rb.write_text(RUNBOOK.replace("REMOTE", str(remote)))
    return rb


def test_copy_and_fetch_over_ssh_then_a_second_apply_changes_nothing(
    tmp_path: Path, fleet: Fleet, shared_dir: Path
) -> None:
    rb = make_runbook(tmp_path, shared_dir)
    uploads = private_uploads()
    proc = apply(rb, fleet, "--output", "json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    results = finished(proc.stdout)
    assert all(r["status"] == "ok" for r in results), [r for r in results if r["status"] != "ok"]
    transfers = [r for r in results if "changed" in r]
    assert len(transfers) == 7 * len(HOSTS) and all(r["changed"] for r in transfers)
    assert_events_valid(proc.stdout)

    blob = (tmp_path / "files" / "blob.bin").read_bytes()
    for h in HOSTS:
        assert (shared_dir / f"{h}.txt").read_text() == "plain text\n"
        assert stat.S_IMODE((shared_dir / f"{h}.txt").stat().st_mode) == 0o640
        assert sha((shared_dir / f"{h}.bin").read_bytes()) == sha(blob)
        conf = f"host = {h}\ntoken = {SECRET}\n"
        assert (shared_dir / f"{h}.conf").read_text() == conf
        root_conf = shared_dir / f"{h}.root.conf"
        assert root_conf.read_text() == conf and stat.S_IMODE(root_conf.stat().st_mode) == 0o600
        assert (root_conf.stat().st_uid, root_conf.stat().st_gid) == (NOBODY.pw_uid, 65534)
        as_nobody = shared_dir / "nobody" / f"{h}.bin"
        assert sha(as_nobody.read_bytes()) == sha(blob) and as_nobody.stat().st_uid == NOBODY.pw_uid
        assert stat.S_IMODE(as_nobody.stat().st_mode) == 0o604
        assert (shared_dir / f"{h}.reloads").read_text() == "reloaded\n"
        assert (tmp_path / "fetched" / f"{h}.txt").read_text() == "plain text\n"
        assert stat.S_IMODE((tmp_path / "fetched" / f"{h}.txt").stat().st_mode) == 0o640
        assert sha((tmp_path / "fetched" / f"{h}.bin").read_bytes()) == sha(blob)
    leftovers = [p.name for p in shared_dir.rglob(".*")]
    assert not leftovers, leftovers  # no temp file beside any dest
    assert private_uploads() == uploads  # become's private uploads are gone

    again = apply(rb, fleet, "--output", "json")
    assert again.returncode == 0, again.stderr
    results = finished(again.stdout)
    transfers = [r for r in results if "changed" in r]
    assert len(transfers) == 7 * len(HOSTS)
    assert [r for r in transfers if r["changed"]] == []
    assert {r["status"] for r in results if r["step"] == "reload"} == {"skipped"}
    assert (shared_dir / "h1.reloads").read_text() == "reloaded\n"


SECRET_RUNBOOK = """
name: a secret in a file
hosts:
  fleet: [h1]
secrets:
  token: {env: TEST_FILES_SECRET}
steps:
  - name: config
    hosts: fleet
    copy: {src: app.conf.j2, dest: "REMOTE/{{ host.name }}.conf", template: true}
  - name: as root
    hosts: fleet
    become: true
    copy: {src: app.conf.j2, dest: "REMOTE/{{ host.name }}.root.conf", template: true}
"""


def test_a_secret_in_a_template_reaches_the_file_and_no_other_surface(
    tmp_path: Path, fleet: Fleet, shared_dir: Path
) -> None:
    (tmp_path / "app.conf.j2").write_text("host = {{ host.name }}\ntoken = {{ token }}\n")
    rb = tmp_path / "rb.yml"
    rb.write_text(SECRET_RUNBOOK.replace("REMOTE", str(shared_dir)))
    env = {"TEST_FILES_SECRET": SECRET}
    real_digest = sha(f"host = h1\ntoken = {SECRET}\n".encode())
    outputs = []
    for args in (
        ("plan", str(rb)),
        ("plan", str(rb), "--format", "json"),
        ("plan", str(rb), "--out", str(tmp_path / "saved.json")),
    ):
        proc = runbook(*args, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    for extra in (("-v",), ("--output", "json")):
        proc = apply(rb, fleet, *extra)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    proc = apply(tmp_path / "saved.json", fleet)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    outputs.append(proc.stdout + proc.stderr)
    for run in journal_dirs(tmp_path):
        for extra in ((), ("--host", "h1", "--step", "config")):
            shown = runbook("show", run.name, str(rb), *extra, cwd=tmp_path)
            assert shown.returncode == 0, shown.stderr
            outputs.append(shown.stdout)
    outputs += [p.read_text(errors="replace") for p in (tmp_path / ".runbook").rglob("*.*")]
    outputs.append((tmp_path / "saved.json").read_text())
    # The files have it; the stand-in's digest is what is shown (the check is not vacuous).
    assert (shared_dir / "h1.conf").read_text().endswith(f"token = {SECRET}\n")
    assert (shared_dir / "h1.root.conf").read_text().endswith(f"token = {SECRET}\n")
    stand_in = sha(b"host = h1\ntoken = ********\n")
    assert any(stand_in in text for text in outputs)
    for text in outputs:
        assert SECRET not in text
        assert real_digest[:12] not in text


def test_failures_over_ssh_are_clear_results(
    tmp_path: Path, fleet: Fleet, shared_dir: Path
) -> None:
    (tmp_path / "f.txt").write_text("data\n")
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o755)
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: failures
hosts:
  fleet: [h1]
steps:
  - name: no such directory
    hosts: fleet
    on_failure: continue
    copy: {{src: f.txt, dest: {shared_dir}/missing/dir/f.txt}}
  - name: not writable as nobody
    hosts: fleet
    on_failure: continue
    become: true
    become_user: nobody
    copy: {{src: f.txt, dest: {locked}/f.txt}}
  - name: no such file to fetch
    hosts: fleet
    on_failure: continue
    fetch: {{src: {shared_dir}/nothing-here.log, dest: got.log}}
""")
    proc = apply(rb, fleet, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    errors = {r["step"]: (r["status"], r["error"]) for r in finished(proc.stdout)}
    assert errors["no such directory"][0] == "failed"
    assert "does not exist" in errors["no such directory"][1]
    assert errors["not writable as nobody"][0] == "failed"
    assert "as nobody" in errors["not writable as nobody"][1]
    assert "Permission denied" in errors["not writable as nobody"][1]
    assert errors["no such file to fetch"][0] == "failed"
    assert "absent" in errors["no such file to fetch"][1]
    assert os.listdir(locked) == [] and not (tmp_path / "got.log").exists()


@pytest.fixture
def tiny_disk(shared_dir: Path) -> Iterator[Path]:
    mount = shared_dir / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_over_ssh_is_a_failed_result(
    tmp_path: Path, fleet: Fleet, tiny_disk: Path
) -> None:
    (tmp_path / "big.bin").write_bytes(os.urandom(2 << 20))
    (tiny_disk / "big.bin").write_bytes(b"old")
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: full
hosts:
  fleet: [h2]
steps:
  - name: too big
    hosts: fleet
    copy: {{src: big.bin, dest: {tiny_disk}/big.bin}}
""")
    proc = apply(rb, fleet, "--output", "json")
    assert proc.returncode == 1, proc.stderr
    (result,) = finished(proc.stdout)
    assert result["status"] == "failed" and result["changed"] is False
    assert "disk full" in result["error"] or "No space" in result["error"], result["error"]
    assert os.listdir(tiny_disk) == ["big.bin"]
    assert (tiny_disk / "big.bin").read_bytes() == b"old"


def test_plan_json_of_a_copy_validates_against_the_plan_schema(
    tmp_path: Path, shared_dir: Path
) -> None:
    from jsonschema import Draft202012Validator

    from runbook.load.loader import schema

    rb = make_runbook(tmp_path, shared_dir)
    proc = runbook("plan", str(rb), "--format", "json", env={"TEST_FILES_SECRET": SECRET})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert not list(Draft202012Validator(schema("plan")).iter_errors(data))
    with contextlib.suppress(StopIteration):
        first = next(c for s in data["steps"] for b in s["batches"] for c in b)
        assert first["transfer"]["kind"] == "copy"
