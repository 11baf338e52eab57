"""``copy: {backup: true}`` (SPEC §12): the replaced file kept as ``DEST.YYYYmmddTHHMMSS~``
on the host, its path registered as ``backup`` ("" when nothing was replaced) — locally
and over SSH, with and without ``become`` (to root and to ``nobody``).

Fleet hosts are this machine, so a "remote" file is checked here byte for byte.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import NOBODY, events, runbook

BACKUP_NAME = re.compile(r"^(?P<dest>.+)\.(?P<stamp>\d{8}T\d{6})(?:\.\d+)?~$")

RUNBOOK = """
name: backups
hosts:
  fleet: [h1, h2]
steps:
  - name: ship
    hosts: HOST
    BECOME
    copy: {src: files/app.conf, dest: "DIR/app.conf", backup: true, mode: "0640"}
    register: shipped
  - name: say
    hosts: HOST
    run: echo "backup=[{{ shipped.backup }}]"
"""


def apply(rb: Path, extra: list[str]) -> list[dict[str, Any]]:
    proc = runbook("apply", str(rb), "--yes", "--output", "json", *extra, cwd=rb.parent)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "Traceback" not in proc.stderr
    return events(proc.stdout)


def shipped(evs: list[dict[str, Any]]) -> dict[str, Any]:
    (done,) = [e for e in evs if e["event"] == "command_finished" and e["step"] == "ship"]
    (reg,) = [e for e in evs if e["event"] == "registered" and e["name"] == "shipped"]
    assert reg["value"]["backup"] == done["backup"]  # registered as the result has it
    (said,) = [e for e in evs if e["event"] == "command_finished" and e["step"] == "say"]
    assert said["stdout"] == f"backup=[{done['backup']}]\n"  # and a template reads it
    return done


@pytest.mark.parametrize(
    ("host", "become"),
    [
        ("localhost", None),
        ("localhost", "root"),
        ("h1", None),
        ("h1", "root"),
        ("h2", "nobody"),
    ],
)
def test_a_replaced_file_is_kept_beside_it_and_registered(
    request: pytest.FixtureRequest, shared_dir: Path, tmp_path: Path, host: str, become: str | None
) -> None:
    extra: list[str] = []
    if host != "localhost":
        fleet = request.getfixturevalue("fleet")
        extra = ["--ssh-config", str(fleet.ssh_config)]
    if become is not None:
        request.getfixturevalue("sudo")
    target = shared_dir / "nobody" if become == "nobody" else shared_dir
    how = "become: true" + (f"\n    become_user: {become}" if become != "root" else "")
    (tmp_path / "files").mkdir()
    src = tmp_path / "files" / "app.conf"
    rb = tmp_path / "rb.yml"
    rb.write_text(
        RUNBOOK.replace("HOST", host)
        .replace("DIR", str(target))
        .replace("BECOME", how if become else "")
    )
    dest = target / "app.conf"

    src.write_text("version 1\n")
    first = shipped(apply(rb, extra))
    assert (first["changed"], first["backup"]) == (True, "")  # nothing was there to keep

    src.write_text("version 2\n")
    second = shipped(apply(rb, extra))
    assert second["changed"] is True
    kept = Path(second["backup"])
    match = BACKUP_NAME.match(str(kept))
    assert match and match["dest"] == str(dest), kept
    assert kept.read_text() == "version 1\n" and dest.read_text() == "version 2\n"
    before = os.stat(kept)
    assert stat.S_IMODE(before.st_mode) == 0o640  # the old file as it was: mode and owner
    owner = NOBODY.pw_uid if become == "nobody" else 0
    assert before.st_uid == owner

    third = shipped(apply(rb, extra))
    assert (third["changed"], third["backup"]) == (False, "")  # nothing replaced: none kept

    src.write_text("version 3\n")
    fourth = shipped(apply(rb, extra))
    again = Path(fourth["backup"])
    assert again != kept  # within the same second too: never over an earlier backup
    assert again.read_text() == "version 2\n" and kept.read_text() == "version 1\n"
    assert sorted(p.name for p in target.glob("app.conf*")) == sorted(
        ["app.conf", kept.name, again.name]
    )


def test_a_relative_dest_on_the_controller_has_a_relative_backup(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "files" / "app.conf").write_text("one\n")
    (tmp_path / "out" / "app.conf").write_text("zero\n")
    rb = tmp_path / "rb.yml"
    rb.write_text(
        RUNBOOK.replace("HOST", "localhost").replace("DIR/", "out/").replace("BECOME", "")
    )
    done = shipped(apply(rb, []))
    assert done["backup"].startswith("out/app.conf.") and done["backup"].endswith("~")
    assert (tmp_path / done["backup"]).read_text() == "zero\n"


def test_the_plan_says_a_backup_is_kept(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "app.conf").write_text("one\n")
    rb = tmp_path / "rb.yml"
    rb.write_text(RUNBOOK.replace("HOST", "localhost").replace("BECOME", ""))
    proc = runbook("plan", str(rb), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "copy files/app.conf -> DIR/app.conf (mode 0640, backup, 4 bytes," in proc.stdout


def test_backup_on_a_fetch_is_refused_by_the_schema(tmp_path: Path) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: x\nsteps:\n  - name: get\n    hosts: localhost\n"
        "    fetch: {src: /etc/hostname, dest: h, backup: true}\n"
    )
    proc = runbook("validate", str(rb), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{rb}:5:"), proc.stderr
    assert "backup" in proc.stderr
