"""``plan --check`` on a config rollout (SPEC §12): per host, what each copy would change —
``unchanged``, ``new`` or a unified diff; a template that reads a secret shows only that
its content changes; binary content shows sizes and digests — over SSH (the fleet),
under ``become`` and on the controller. Nothing is written, and the secret never shows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import journal_dirs, runbook
from tests.fleet import Fleet

pytestmark = pytest.mark.ssh

SECRET = "rollout-s3cret-Value-7"
OLD_SECRET = "the-0ld-secret-Value"

RUNBOOK = """
name: Roll out the app config
hosts:
  web: [h1, h2, h3]
vars: {workers: 4}
secrets:
  token: {env: CHECK_FILES_TOKEN}
steps:
  - name: Ship the config
    hosts: web:localhost
    copy: {src: files/app.conf.j2, dest: "REMOTE/{{ host.name }}/app.conf", template: true}
  - name: Ship the credentials
    hosts: web
    become: true
    copy: {src: files/creds.j2, dest: "REMOTE/{{ host.name }}/creds", template: true,
           mode: "0600", backup: true}
  - name: Ship the logo
    hosts: web
    copy: {src: files/logo.bin, dest: "REMOTE/{{ host.name }}/logo.bin"}
"""

CONFIG = "# app on {{ host.name }}\nlisten = 8080\nworkers = {{ workers }}\nlog = info\n"


def config(host: str, listen: int = 8080, workers: int = 4) -> str:
    return f"# app on {host}\nlisten = {listen}\nworkers = {workers}\nlog = info\n"


@pytest.fixture
def rollout(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    remote = Path(tempfile.mkdtemp(prefix="runbook-check-"))
    for host in ("h1", "h2", "h3", "localhost"):
        (remote / host).mkdir()
    files = tmp_path / "files"
    files.mkdir()
    (files / "app.conf.j2").write_text(CONFIG)
    (files / "creds.j2").write_text("user = app\npassword = {{ token }}\n")
    logo = os.urandom(4096) + b"\0PNG"
    (files / "logo.bin").write_bytes(logo)
    # h1: everything differs; h2: everything already as planned; h3: nothing there yet.
    (remote / "h1" / "app.conf").write_text(config("h1", listen=80, workers=2))
    (remote / "h1" / "creds").write_text(f"user = app\npassword = {OLD_SECRET}\n")
    (remote / "h1" / "logo.bin").write_bytes(os.urandom(1000))
    (remote / "h2" / "app.conf").write_text(config("h2"))
    (remote / "h2" / "creds").write_text(f"user = app\npassword = {SECRET}\n")
    os.chmod(remote / "h2" / "creds", 0o600)
    (remote / "h2" / "logo.bin").write_bytes(logo)
    (remote / "localhost" / "app.conf").write_text(config("localhost", workers=8))
    rb = tmp_path / "rb.yml"
    rb.write_text(RUNBOOK.replace("REMOTE", str(remote)))
    try:
        yield rb, remote
    finally:
        shutil.rmtree(remote)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def check(rb: Path, fleet: Fleet, *extra: str) -> str:
    proc = runbook(
        "plan", "--check", str(rb), "--ssh-config", str(fleet.ssh_config), *extra,
        cwd=rb.parent, env={"CHECK_FILES_TOKEN": SECRET},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and OLD_SECRET not in proc.stdout
    return proc.stdout


def host_block(text: str, step: str, host: str) -> list[str]:
    """The lines under one host's copy line in one step."""
    block = text[text.index(f"] {step}    ") :].split("\n\n")[0].split("\n")
    start = next(i for i, ln in enumerate(block) if ln.lstrip().startswith(f"{host}  "))
    pad = " " * (block[start].index("copy ") + 2)  # where the lines under it start
    out = []
    for line in block[start + 1 :]:
        if not line.startswith(pad):
            break
        out.append(line[len(pad) :])
    return out


def test_check_shows_per_host_what_each_copy_changes(
    rollout: tuple[Path, Path], fleet: Fleet, sudo: None
) -> None:
    rb, remote = rollout
    before = snapshot(remote)
    text = check(rb, fleet)
    assert snapshot(remote) == before  # read, never written
    assert not journal_dirs(rb.parent)  # no discover steps: no run at all

    config_step = "Ship the config"
    assert host_block(text, config_step, "h1") == [
        f"--- {remote}/h1/app.conf on h1",
        f"+++ {remote}/h1/app.conf planned",
        "@@ -1,4 +1,4 @@",
        " # app on h1",
        "-listen = 80",
        "-workers = 2",
        "+listen = 8080",
        "+workers = 4",
        " log = info",
    ]
    assert host_block(text, config_step, "h2") == ["unchanged"]
    assert host_block(text, config_step, "h3") == [
        f"new: {remote}/h3/app.conf does not exist ({len(config('h3'))} bytes to write)"
    ]
    assert "-workers = 8" in host_block(text, config_step, "localhost")  # on the controller

    creds = "Ship the credentials"  # become: read as root; a secret: no text, no size
    assert host_block(text, creds, "h1") == [
        "mode 0644 → 0600",
        "content changed (not shown: the template reads a secret)",
    ]
    assert host_block(text, creds, "h2") == ["unchanged"]
    assert host_block(text, creds, "h3") == [f"new: {remote}/h3/creds does not exist"]

    logo = "Ship the logo"
    (line,) = host_block(text, logo, "h1")
    planned = hashlib.sha256((rb.parent / "files" / "logo.bin").read_bytes()).hexdigest()
    on_h1 = hashlib.sha256((remote / "h1" / "logo.bin").read_bytes()).hexdigest()
    assert line == f"binary: 1000 → 4100 bytes, sha256:{on_h1[:16]} → sha256:{planned[:16]}"
    assert host_block(text, logo, "h2") == ["unchanged"]
    assert "checked: no discover steps; 10 copy destinations read" in text

    # After the apply, the check finds nothing to change anywhere.
    proc = runbook(
        "apply", "--yes", str(rb), "--ssh-config", str(fleet.ssh_config), cwd=rb.parent,
        env={"CHECK_FILES_TOKEN": SECRET},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    again = check(rb, fleet)
    for step, hosts in ((config_step, ["h1", "h2", "h3", "localhost"]), (creds, ["h1", "h3"])):
        for host in hosts:
            assert host_block(again, step, host) == ["unchanged"], (step, host)
    assert (remote / "h1" / "creds").read_text() == f"user = app\npassword = {SECRET}\n"
    (kept,) = (remote / "h1").glob("creds.*~")  # backup: true kept the old credentials
    assert OLD_SECRET in kept.read_text()
