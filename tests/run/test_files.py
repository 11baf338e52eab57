"""``copy`` and ``fetch`` on the controller: planning, idempotence, atomicity, failures.

Plans go through the Python API (``load_runbook`` → ``make_plan``) and runs through the
real ``Runner`` with a ``LocalExecutionContext``; what only the CLI does (saved plans,
exit codes) through ``python -m runbook``. The SSH transport is ``tests/e2e/test_files_ssh.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from runbook.errors import SchemaError, TemplateError
from runbook.inventory.build import build_inventory
from runbook.load.loader import load_runbook
from runbook.load.secrets import resolve_secrets
from runbook.model.command import Command, CommandResult, Status
from runbook.model.files import Transfer, parse_mode
from runbook.model.plan import Plan
from runbook.model.runbook import Host
from runbook.plan.planner import make_plan
from runbook.plan.saved import plan_to_dict
from runbook.plan.text import plan_text
from runbook.run.contexts.local import LocalExecutionContext
from runbook.run.execute import run_command
from runbook.run.runner import Runner
from runbook.run.transfer import content as content_module
from runbook.run.transfer.control import Watch
from runbook.run.values import RunValues
from runbook.text import STAND_IN
from tests.e2e.helpers import runbook as runbook_cli

LOCAL = Host("localhost", connection="local")
SECRET = "pa55-w0rd-in-a-template"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def plan_of(path: Path, environ: dict[str, str] | None = None) -> Plan:
    rb = load_runbook(str(path))
    inv = build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path)
    return make_plan(rb, inv, {}, resolve_secrets(rb.secrets, environ or {}))


def apply(plan: Plan, secrets: dict[str, str] | None = None) -> list[CommandResult]:
    """The plan through the real runner, on the controller."""
    context = LocalExecutionContext()
    try:
        values = RunValues(plan, secrets or {}, str)
        return Runner(plan, context, run_id="test", values=values).run().results
    finally:
        context.close()


def by_step(results: list[CommandResult]) -> dict[str, CommandResult]:
    return {r.step: r for r in results}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copy_command(src: Path, dest: Path, **fields: object) -> Command:
    """A planned copy of a plain file, as the planner makes it."""
    data = src.read_bytes()
    transfer = Transfer(
        "copy",
        src.name,
        str(dest),
        size=len(data),
        sha256=sha(data),
        src_sha256=sha(data),
        root=str(src.parent),
        **fields,  # type: ignore[arg-type]
    )
    return Command("copy", LOCAL, transfer.summary(), transfer=transfer)


# -- the step as written --------------------------------------------------------------


@pytest.mark.parametrize(
    "written,mode", [("0640", 0o640), ("640", 0o640), ("4755", 0o4755), ("0000", 0)]
)
def test_mode_is_a_quoted_octal_string(written: str, mode: int) -> None:
    assert parse_mode(written, None, "s") == mode


@pytest.mark.parametrize(
    "written,why",
    [
        (999, "not a quoted octal mode"),
        (416, "not a quoted octal mode"),  # what YAML makes of an unquoted 0640
        ("999", "not an octal file mode"),
        ("0o640", "not an octal file mode"),
        ("17777", "above 07777"),
        (True, "not a quoted octal mode"),
    ],
)
def test_mode_that_is_not_an_octal_string_is_refused(written: object, why: str) -> None:
    with pytest.raises(SchemaError, match=why):
        parse_mode(written, None, "s")


def test_until_and_env_are_refused_on_a_copy_step(tmp_path: Path) -> None:
    write(tmp_path / "files" / "a", "a\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        steps:
          - name: s
            hosts: localhost
            copy: {src: files/a, dest: /tmp/never}
            until: rc == 0
        """,
    )
    with pytest.raises(SchemaError, match="until is not allowed on a copy step"):
        load_runbook(str(rb))


# -- the plan -------------------------------------------------------------------------


def test_plan_shows_dest_mode_size_and_digest_never_the_content(tmp_path: Path) -> None:
    write(tmp_path / "files" / "app.conf.j2", "name={{ host.name }} marker=CONTENT-7731\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        steps:
          - name: ship
            hosts: localhost
            copy: {src: files/app.conf.j2, dest: out/app.conf, template: true, mode: "0640"}
        """,
    )
    plan = plan_of(rb)
    rendered = b"name=localhost marker=CONTENT-7731\n"
    text = plan_text(plan)
    data = json.dumps(plan_to_dict(plan))
    assert f"sha256:{sha(rendered)[:16]}" in text and "mode 0640" in text
    assert f"{len(rendered)} bytes" in text and "-> out/app.conf" in text
    transfer = plan_to_dict(plan)["steps"][0]["batches"][0][0]["transfer"]
    assert transfer["sha256"] == sha(rendered) and transfer["size"] == len(rendered)
    assert transfer["mode"] == "0640" and transfer["dest"] == "out/app.conf"
    for shown in (text, data):
        assert "CONTENT-7731" not in shown


def test_a_template_that_reads_a_secret_shows_only_the_stand_in_digest(tmp_path: Path) -> None:
    write(tmp_path / "files" / "db.ini.j2", "password = {{ pw }}\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        secrets:
          pw: {env: TEST_FILES_PW}
        steps:
          - name: ship
            hosts: localhost
            copy: {src: files/db.ini.j2, dest: out/db.ini, template: true}
        """,
    )
    plan = plan_of(rb, {"TEST_FILES_PW": SECRET})
    real = sha(f"password = {SECRET}\n".encode())
    stand_in = sha(f"password = {STAND_IN}\n".encode())
    text, data = plan_text(plan), json.dumps(plan_to_dict(plan))
    assert stand_in[:16] in text and stand_in in data
    assert "(secret)" in text and "secret: pw" in text
    for shown in (text, data):
        assert real[:12] not in shown and SECRET not in shown
    # The real rendering reaches the file, and only it.
    (tmp_path / "out").mkdir()
    results = apply(plan, {"pw": SECRET})
    assert results[0].status is Status.OK, results[0]
    assert (tmp_path / "out" / "db.ini").read_text() == f"password = {SECRET}\n"
    assert results[0].sha256 == stand_in


def test_template_errors_name_the_template_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "files" / "t.j2", "one\ntwo {{ host.name }}\nthree {{ nope }}\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        steps:
          - name: ship
            hosts: localhost
            copy: {src: files/t.j2, dest: /tmp/never, template: true}
        """,
    )
    with pytest.raises(TemplateError) as err:
        plan_of(rb)
    assert err.value.position is not None
    assert err.value.position.file.endswith("files/t.j2") and err.value.position.line == 3
    assert "'nope' is undefined" in str(err.value) and "step 'ship'" in str(err.value)


def test_a_template_keeps_crlf_line_endings(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "t.j2").write_bytes(b"a={{ host.name }}\r\nb\r\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        steps:
          - name: ship
            hosts: localhost
            copy: {src: files/t.j2, dest: out/t, template: true}
        """,
    )
    (tmp_path / "out").mkdir()
    assert apply(plan_of(rb))[0].status is Status.OK
    assert (tmp_path / "out" / "t").read_bytes() == b"a=localhost\r\nb\r\n"


# -- idempotence and register ---------------------------------------------------------

IDEMPOTENT = """
name: x
steps:
  - name: ship
    hosts: localhost
    copy: {src: files/a.bin, dest: out/a.bin, mode: "MODE"}
    register: cfg
  - name: reload
    hosts: localhost
    when: cfg.changed
    run: echo reloaded >> RELOADS
"""


def test_copy_writes_once_then_reports_unchanged(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "out").mkdir()
    data = os.urandom(200_000) + b"\0\r\n"
    (tmp_path / "files" / "a.bin").write_bytes(data)
    text = IDEMPOTENT.replace("MODE", "0640").replace("RELOADS", str(tmp_path / "reloads"))
    rb = write(tmp_path / "rb.yml", text)
    dest = tmp_path / "out" / "a.bin"

    first = by_step(apply(plan_of(rb)))
    assert first["ship"].changed is True and first["reload"].status is Status.OK
    assert dest.read_bytes() == data and stat.S_IMODE(dest.stat().st_mode) == 0o640
    inode = dest.stat().st_ino

    second = by_step(apply(plan_of(rb)))
    assert second["ship"].changed is False and second["ship"].status is Status.OK
    assert second["reload"].status is Status.SKIPPED
    assert dest.stat().st_ino == inode  # nothing was written
    assert (tmp_path / "reloads").read_text() == "reloaded\n"

    # The mode alone differs: changed, content untouched.
    os.chmod(dest, 0o600)
    assert by_step(apply(plan_of(rb)))["ship"].changed is True
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    # The content differs (same size): changed.
    dest.write_bytes(b"x" + data[1:])
    assert by_step(apply(plan_of(rb)))["ship"].changed is True
    assert dest.read_bytes() == data


def test_register_of_a_copy_holds_changed_dest_and_digest(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.bin").write_bytes(b"abc")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        steps:
          - name: ship
            hosts: localhost
            copy: {src: files/a.bin, dest: out.bin}
            register: cfg
          - name: show
            hosts: localhost
            run: echo "{{ cfg.changed }} {{ cfg.dest }} {{ cfg.sha256 }} {{ cfg.status }}"
        """,
    )
    results = by_step(apply(plan_of(rb)))
    assert results["show"].stdout == f"True out.bin {sha(b'abc')} ok\n"


def test_a_copy_whose_when_reads_a_register_is_decided_at_apply(tmp_path: Path) -> None:
    write(tmp_path / "files" / "t.j2", "role={{ role }}\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        vars: {role: primary}
        steps:
          - name: probe
            hosts: localhost
            run: echo yes
            register: r
          - name: wanted
            hosts: localhost
            when: r.stdout.strip() == "yes"
            copy: {src: files/t.j2, dest: wanted.conf, template: true}
            register: w
          - name: unwanted
            hosts: localhost
            when: r.stdout.strip() == "no"
            copy: {src: files/t.j2, dest: unwanted.conf, template: true}
            register: u
          - name: show
            hosts: localhost
            run: echo "{{ w.changed }} {{ u.changed }} {{ u.status }}"
        """,
    )
    plan = plan_of(rb)
    assert "when: r.stdout.strip() == 'yes' (decided at apply)" in plan_text(plan)
    results = by_step(apply(plan))
    assert (tmp_path / "wanted.conf").read_text() == "role=primary\n"
    assert not (tmp_path / "unwanted.conf").exists()
    assert results["unwanted"].status is Status.SKIPPED
    assert results["show"].stdout == "True False skipped\n"


def test_an_existing_file_keeps_its_mode_when_none_is_given(tmp_path: Path) -> None:
    src, dest = tmp_path / "a", tmp_path / "d" / "a"
    src.write_bytes(b"new")
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    os.chmod(dest, 0o604)
    result = run_command(copy_command(src, dest), LocalExecutionContext())
    assert result.changed and dest.read_bytes() == b"new"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o604
    new = tmp_path / "d" / "b"
    run_command(copy_command(src, new), LocalExecutionContext())
    assert stat.S_IMODE(new.stat().st_mode) == 0o644  # a new file: 0644


# -- atomicity -------------------------------------------------------------------------


def test_a_concurrent_reader_never_sees_a_half_written_file(tmp_path: Path) -> None:
    """Readers open dest again and again while it is replaced 20 times by one of two
    8 MiB contents: every read is whole (one of the two digests), never a mix."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(8 << 20))
    b.write_bytes(os.urandom(8 << 20))
    digests = {sha(a.read_bytes()), sha(b.read_bytes())}
    dest = tmp_path / "out" / "f.bin"
    dest.parent.mkdir()
    context = LocalExecutionContext()
    assert run_command(copy_command(a, dest), context).changed
    stop, seen, bad = threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            digest = sha(dest.read_bytes())
            (seen if digest in digests else bad).append(digest)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(20):
            result = run_command(copy_command(b if i % 2 == 0 else a, dest), context)
            assert result.status is Status.OK and result.changed
    finally:
        stop.set()
        thread.join(30)
    assert not bad, f"{len(bad)} reads saw a partial file"
    assert len(seen) > 20
    assert not [p for p in dest.parent.iterdir() if p.name != "f.bin"]  # no temp left


class _Stalling(content_module.Payload):
    """A payload that writes one chunk, then lets the test look, then fails."""

    looked = threading.Event()
    go_on = threading.Event()

    def chunks(self, watch: Watch, size: int = 1 << 20) -> Iterator[bytes]:
        yield b"first chunk "
        _Stalling.looked.set()
        _Stalling.go_on.wait(10)
        raise content_module.TransferFailed("the test stopped it")


def test_the_temp_file_is_private_and_removed_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dest = tmp_path / "src", tmp_path / "d" / "conf"
    src.write_bytes(b"new content")
    dest.parent.mkdir()
    dest.write_bytes(b"old content")
    monkeypatch.setattr(
        "runbook.run.transfer.local.Payload.of",
        lambda tr: _Stalling(tr.size, tr.src_sha256, path=tr.on_controller(tr.src)),
    )
    box: dict[str, CommandResult] = {}
    thread = threading.Thread(
        target=lambda: box.update(r=run_command(copy_command(src, dest), LocalExecutionContext()))
    )
    thread.start()
    assert _Stalling.looked.wait(10)
    temps = [p for p in dest.parent.iterdir() if p.name != "conf"]
    assert len(temps) == 1 and temps[0].name.startswith(".conf.runbook-")
    assert stat.S_IMODE(temps[0].stat().st_mode) == 0o600
    _Stalling.go_on.set()
    thread.join(10)
    result = box["r"]
    assert result.status is Status.FAILED and "the test stopped it" in (result.error or "")
    assert result.changed is False
    assert sorted(p.name for p in dest.parent.iterdir()) == ["conf"]
    assert dest.read_bytes() == b"old content"


def test_a_src_edited_after_the_plan_fails_the_copy_and_writes_nothing(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_bytes(b"reviewed")
    command = copy_command(src, dest)
    src.write_bytes(b"tampered")
    result = run_command(command, LocalExecutionContext())
    assert result.status is Status.FAILED and "changed since the plan" in (result.error or "")
    assert not dest.exists() and os.listdir(tmp_path) == ["src"]


def test_a_src_edited_between_two_hosts_copies_is_caught(tmp_path: Path) -> None:
    """The first host's copy hashes the src; later ones skip the hash only while the
    file is provably the same one (inode, size, mtime, ctime)."""
    src = tmp_path / "src"
    src.write_bytes(b"reviewed")
    first, second = copy_command(src, tmp_path / "d1"), copy_command(src, tmp_path / "d2")
    assert run_command(first, LocalExecutionContext()).status is Status.OK
    src.write_bytes(b"tampere")  # another size
    src.write_bytes(b"tampered")  # the planned size again
    result = run_command(second, LocalExecutionContext())
    assert result.status is Status.FAILED and "changed since the plan" in (result.error or "")
    assert not (tmp_path / "d2").exists()


def test_a_slow_copy_times_out_and_leaves_dest_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dest = tmp_path / "src", tmp_path / "d" / "dest"
    src.write_bytes(b"x" * 100)
    dest.parent.mkdir()
    monkeypatch.setattr(content_module, "READ_CHUNK", 1)

    real_chunks = content_module.Payload.chunks

    def slow(self: content_module.Payload, watch: Watch, size: int = 1) -> Iterator[bytes]:
        for chunk in real_chunks(self, watch, 1):
            time.sleep(0.02)
            yield chunk

    monkeypatch.setattr(content_module.Payload, "chunks", slow)
    command = copy_command(src, dest)
    command = replace(command, spec=replace(command.spec, timeout=0.3))
    result = run_command(command, LocalExecutionContext())
    assert result.status is Status.TIMED_OUT and result.changed is False
    assert os.listdir(dest.parent) == []


# -- failures an operator can act on --------------------------------------------------


def test_an_unwritable_destination_is_a_clear_failure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data")
    missing = run_command(copy_command(src, tmp_path / "no" / "dir" / "f"), LocalExecutionContext())
    assert missing.status is Status.FAILED
    assert "directory of dest" in (missing.error or "") and "does not exist" in missing.error
    # A directory nobody may search but not write in (tmp_path itself is 0700).
    locked = Path(tempfile.mkdtemp(prefix="runbook-locked-", dir="/tmp"))
    try:
        os.chmod(locked, 0o755)
        command = copy_command(src, locked / "f")
        command = replace(command, spec=replace(command.spec, become=True, become_user="nobody"))
        result = run_command(command, LocalExecutionContext())
        assert result.status is Status.FAILED, result
        assert "as nobody" in (result.error or "") and "Permission denied" in result.error
        assert os.listdir(locked) == []
    finally:
        shutil.rmtree(locked)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root and mount rights: skipped where they are missing)."""
    mount = tmp_path / "tiny"
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


def test_a_full_disk_is_a_clear_failure(tmp_path: Path, tiny_disk: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(2 << 20))
    (tiny_disk / "f").write_bytes(b"old")
    result = run_command(copy_command(src, tiny_disk / "f"), LocalExecutionContext())
    assert result.status is Status.FAILED
    assert "No space left on device" in (result.error or "")
    assert sorted(os.listdir(tiny_disk)) == ["f"] and (tiny_disk / "f").read_bytes() == b"old"


# -- fetch -----------------------------------------------------------------------------


def test_fetch_creates_parents_and_is_unchanged_the_second_time(tmp_path: Path) -> None:
    log = tmp_path / "host" / "app.log"
    log.parent.mkdir()
    log.write_bytes(b"line 1\n\0binary\r\n")
    os.chmod(log, 0o640)
    rb = write(
        tmp_path / "rb.yml",
        f"""
        name: x
        steps:
          - name: collect
            hosts: localhost
            fetch: {{src: {log}, dest: "logs/{{{{ host.name }}}}/app.log"}}
        """,
    )
    fetched = tmp_path / "logs" / "localhost" / "app.log"
    first = apply(plan_of(rb))[0]
    assert first.changed is True and fetched.read_bytes() == log.read_bytes()
    assert first.sha256 == sha(log.read_bytes())
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o640  # the source's, not wider
    assert apply(plan_of(rb))[0].changed is False
    log.write_bytes(b"line 2\n")
    assert apply(plan_of(rb))[0].changed is True and fetched.read_bytes() == b"line 2\n"


# -- saved plans -------------------------------------------------------------------------


def test_a_saved_plan_refuses_a_src_that_changed_since(tmp_path: Path) -> None:
    write(tmp_path / "files" / "app.conf", "v1\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        steps:
          - name: ship
            hosts: localhost
            copy: {src: files/app.conf, dest: out.conf}
        """,
    )
    assert runbook_cli("plan", str(rb), "--out", str(tmp_path / "p.json")).returncode == 0
    (tmp_path / "files" / "app.conf").write_text("v2\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = runbook_cli("apply", str(tmp_path / "p.json"), "--yes", cwd=elsewhere)
    assert proc.returncode == 2, proc.stderr
    assert "changed since the plan was made" in proc.stderr and "app.conf" in proc.stderr
    assert not (tmp_path / "out.conf").exists()
    (tmp_path / "files" / "app.conf").write_text("v1\n")  # as reviewed: it applies
    proc = runbook_cli("apply", str(tmp_path / "p.json"), "--yes", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.conf").read_text() == "v1\n"


def test_resume_restores_copies_from_the_journal(tmp_path: Path) -> None:
    write(tmp_path / "files" / "a.conf", "a\n")
    gate = tmp_path / "gate"
    rb = write(
        tmp_path / "rb.yml",
        f"""
        name: x
        steps:
          - name: ship
            hosts: localhost
            copy: {{src: files/a.conf, dest: out.conf}}
            register: cfg
          - name: gate
            hosts: localhost
            run: test -e {gate} && echo "{{{{ cfg.changed }}}}"
        """,
    )
    first = runbook_cli("apply", str(rb), "--yes", "--output", "json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout.splitlines()[0])["run_id"]
    gate.touch()
    resumed = runbook_cli(
        "apply", str(rb), "--yes", "--resume", run_id, "--output", "json", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    done = {
        e["step"]: e
        for e in map(json.loads, resumed.stdout.splitlines())
        if e["event"] == "command_finished"
    }
    assert done["ship"]["error"] == f"already ok in run {run_id}"
    assert done["gate"]["stdout"] == "True\n"  # the register, restored from the journal
    assert (tmp_path / "out.conf").read_text() == "a\n"


def test_kill_all_stops_a_transfer_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dest = tmp_path / "src", tmp_path / "d" / "dest"
    src.write_bytes(b"y" * 1000)
    dest.parent.mkdir()
    started = threading.Event()
    real_chunks = content_module.Payload.chunks

    def slow(self: content_module.Payload, watch: Watch, size: int = 1) -> Iterator[bytes]:
        for chunk in real_chunks(self, watch, 10):
            started.set()
            time.sleep(0.01)
            yield chunk

    monkeypatch.setattr(content_module.Payload, "chunks", slow)
    context = LocalExecutionContext()
    box: dict[str, CommandResult] = {}
    thread = threading.Thread(
        target=lambda: box.update(r=run_command(copy_command(src, dest), context))
    )
    thread.start()
    assert started.wait(10)
    context.kill_all()
    thread.join(10)
    assert box["r"].status is Status.FAILED and "interrupted" in (box["r"].error or "")
    with contextlib.suppress(FileNotFoundError):
        assert os.listdir(dest.parent) == []
    shutil.rmtree(dest.parent, ignore_errors=True)


def test_a_template_that_reads_no_name_is_still_rendered_at_apply(tmp_path: Path) -> None:
    """It used to reach the transfer unrendered: an internal error (exit 70)."""
    write(tmp_path / "files" / "static.j2", "static\n")
    rb = write(
        tmp_path / "rb.yml",
        """
        name: x
        steps:
          - name: ship
            hosts: localhost
            copy: {src: files/static.j2, dest: out.conf, template: true}
        """,
    )
    (result,) = apply(plan_of(rb))
    assert result.status is Status.OK, result.error
    assert (tmp_path / "out.conf").read_text() == "static\n"
