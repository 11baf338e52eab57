"""Files on a target cannot be turned against the operator (issue 24, SPEC §6).

Whoever owns the directory of a ``copy`` dest or a ``fetch`` src can swap names in it for
symlinks between the steps of the transfer. Each race is made deterministic with the
test-only pause hook (``RUNBOOK_TEST_PAUSE``: the transfer stops at a named point the
test holds, the test swaps, then says go), on every transport: the controller itself
(``localhost``), ``sudo`` there, a real sshd host, and ``sudo`` over it.

The "attacker" here is the test process; the target it aims at is a root-only file
beside the transfer (``shadow``), which must keep its owner, mode and bytes, and whose
bytes must never reach the controller.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from runbook.run.transfer.compare import Found
from runbook.run.transfer.control import TransferFailed
from runbook.run.transfer.local import as_probed
from runbook.run.transfer.scripts import READ, plain
from tests.e2e.helpers import finished, runbook, start, wait_for
from tests.fleet import Fleet

SHADOW = b"root:only-secret-bytes\n"


@dataclass(frozen=True)
class Transport:
    name: str
    host: str  # localhost, or a fleet host
    become: bool

    @property
    def ssh(self) -> bool:
        return self.host != "localhost"


TRANSPORTS = [
    Transport("local", "localhost", False),
    Transport("local-sudo", "localhost", True),
    Transport("ssh", "h1", False),
    Transport("ssh-sudo", "h1", True),
]


@pytest.fixture(
    params=[
        pytest.param(t, id=t.name, marks=[pytest.mark.ssh] if t.ssh else []) for t in TRANSPORTS
    ]
)
def transport(request: pytest.FixtureRequest) -> Transport:
    t: Transport = request.param
    if t.become:
        request.getfixturevalue("sudo")
    if t.ssh:
        request.getfixturevalue("fleet")
    return t


@pytest.fixture
def area() -> Iterator[Path]:
    """The directory of the transfer, and a root-only file in it."""
    root = Path(tempfile.mkdtemp(prefix="runbook-race-"))
    os.chmod(root, 0o755)
    shadow = root / "shadow"
    shadow.write_bytes(SHADOW)
    os.chmod(shadow, 0o600)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Pauses:
    """The test's side of the hook: hold points, wait until one is reached, let it go."""

    def __init__(self, directory: Path, *held: str) -> None:
        self.dir = directory
        directory.mkdir()
        for point in held:
            (directory / f"{point}.hold").touch()

    @property
    def env(self) -> dict[str, str]:
        return {"RUNBOOK_TEST_PAUSE": str(self.dir)}

    def reached(self, point: str, proc: Any) -> None:
        def there() -> bool:
            if proc.poll() is not None:
                err = proc.communicate()[1][-500:]
                raise AssertionError(f"the run ended before {point}: {err}")
            return (self.dir / f"{point}.reached").exists()

        wait_for(there, timeout=30, what=f"the transfer to reach {point}")

    def go(self, point: str) -> None:
        (self.dir / f"{point}.go").touch()


def write_runbook(tmp_path: Path, t: Transport, step: str) -> Path:
    become = "    become: true\n" if t.become else ""
    rb = tmp_path / "rb.yml"
    hosts = f"hosts:\n  fleet: [{t.host}]\n" if t.ssh else ""
    rb.write_text(f"name: race\n{hosts}steps:\n  - name: s\n    hosts: {t.host}\n{become}{step}")
    return rb


def apply_args(rb: Path, t: Transport, fleet: Fleet | None) -> list[str]:
    args = ["apply", str(rb), "--yes", "--output", "json"]
    if t.ssh:
        assert fleet is not None
        args += ["--ssh-config", str(fleet.ssh_config)]
    return args


def fleet_of(request: pytest.FixtureRequest, t: Transport) -> Fleet | None:
    return request.getfixturevalue("fleet") if t.ssh else None


def run_paused(
    tmp_path: Path, rb: Path, t: Transport, fleet: Fleet | None, point: str, attack: Any
) -> dict[str, Any]:
    """Apply ``rb`` holding ``point``; ``attack()`` there; the one result."""
    pauses = Pauses(tmp_path / "pauses", point)
    proc = start(*apply_args(rb, t, fleet), cwd=tmp_path, env=pauses.env)
    try:
        pauses.reached(point, proc)
        attack()
        pauses.go(point)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err, err
    (result,) = finished(out)
    return result


def assert_shadow_intact(area: Path) -> None:
    st = (area / "shadow").lstat()
    assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (area / "shadow").read_bytes() == SHADOW


def everything_written(tmp_path: Path) -> str:
    """What the run left on the controller: journal and any fetched file."""
    texts = [p.read_bytes().decode(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    return "\n".join(texts)


# -- copy ------------------------------------------------------------------------------


def copy_step(area: Path, dest: str = "app.conf") -> str:
    return (
        f"    copy: {{src: app.conf, dest: {area / dest}, owner: nobody, group: nogroup, "
        'mode: "0644"}\n'
    )


def test_a_temp_file_swapped_for_a_symlink_is_never_chowned_or_chmodded(
    tmp_path: Path, area: Path, transport: Transport, request: pytest.FixtureRequest
) -> None:
    """Between writing the temp file and setting its owner and mode, the temp name
    becomes a symlink to a root-only file: owner and mode go to the file written (on
    its descriptor), and the swapped name is never renamed over dest."""
    (tmp_path / "app.conf").write_text("new config\n")
    rb = write_runbook(tmp_path, transport, copy_step(area))
    fleet = fleet_of(request, transport)

    def swap() -> None:
        (temp,) = area.glob(".app.conf.runbook-*")
        temp.rename(area / "moved-away")
        temp.symlink_to(area / "shadow")

    result = run_paused(tmp_path, rb, transport, fleet, "install.written", swap)
    assert result["status"] == "failed", result
    assert "was replaced during the copy" in result["error"], result["error"]
    assert_shadow_intact(area)
    assert not (area / "app.conf").exists()
    assert not list(area.glob(".app.conf.runbook-*"))  # the planted link is removed too


def test_a_dest_that_links_to_a_directory_is_refused(
    tmp_path: Path, area: Path, transport: Transport, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "app.conf").write_text("new config\n")
    (area / "conf.d").mkdir()
    (area / "app.conf").symlink_to(area / "conf.d")
    rb = write_runbook(tmp_path, transport, copy_step(area))
    proc = runbook(*apply_args(rb, transport, fleet_of(request, transport)), cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    (result,) = finished(proc.stdout)
    assert result["status"] == "failed"
    assert "symbolic link to a directory" in result["error"], result["error"]
    assert os.listdir(area / "conf.d") == []
    assert (area / "app.conf").is_symlink()


def test_a_dest_swapped_for_a_directory_link_after_the_probe_is_replaced_not_entered(
    tmp_path: Path, area: Path, transport: Transport, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "app.conf").write_text("new config\n")
    (area / "conf.d").mkdir()
    rb = write_runbook(tmp_path, transport, copy_step(area))

    def swap() -> None:
        (area / "app.conf").symlink_to(area / "conf.d")

    result = run_paused(tmp_path, rb, transport, fleet_of(request, transport), "copy.probed", swap)
    assert result["status"] == "ok", result
    assert os.listdir(area / "conf.d") == []  # nothing planted inside the directory
    dest = area / "app.conf"
    assert not dest.is_symlink() and dest.read_text() == "new config\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


# -- fetch -----------------------------------------------------------------------------


def fetch_step(area: Path) -> str:
    return f"    fetch: {{src: {area / 'app.log'}, dest: got/app.log}}\n"


@pytest.mark.parametrize("target", ["shadow", "/dev/zero"])
def test_a_fetch_src_swapped_after_the_probe_never_reaches_the_controller(
    tmp_path: Path,
    area: Path,
    transport: Transport,
    request: pytest.FixtureRequest,
    target: str,
) -> None:
    """After the probe saw a small regular file, src becomes a symlink to a root-only
    file or to /dev/zero (1.5 GB in 4 s, issue 24). Over a host the read refuses it;
    on the controller the fetch reads the descriptor it probed. Either way no byte of
    the target arrives and nothing bigger than the probed file is written."""
    log = area / "app.log"
    log.write_bytes(b"log line\n")
    os.chmod(log, 0o644)
    rb = write_runbook(tmp_path, transport, fetch_step(area))

    def swap() -> None:
        log.unlink()
        log.symlink_to(area / target if target == "shadow" else target)

    result = run_paused(tmp_path, rb, transport, fleet_of(request, transport), "fetch.probed", swap)
    got = tmp_path / "got" / "app.log"
    if transport.name == "local":  # one O_NOFOLLOW descriptor, probed and read
        assert result["status"] == "ok", result
        assert got.read_bytes() == b"log line\n"
    else:
        assert result["status"] == "failed", result
        assert "replaced" in result["error"], result["error"]
        assert not got.exists()
    assert SHADOW.decode().strip() not in everything_written(tmp_path)
    assert_shadow_intact(area)


def test_a_fetch_src_swapped_back_after_it_was_opened_is_refused(
    tmp_path: Path, fleet: Fleet, area: Path, sudo: None
) -> None:
    """The read opens src, then checks that the name still is what it opened: a
    symlink swapped in for the open and out again before the check is caught."""
    t = Transport("ssh-sudo", "h1", True)
    log = area / "app.log"
    log.write_bytes(b"log line\n")
    rb = write_runbook(tmp_path, t, fetch_step(area))
    pauses = Pauses(tmp_path / "pauses", "fetch.probed", "read.opened")
    proc = start(*apply_args(rb, t, fleet), cwd=tmp_path, env=pauses.env)
    try:
        pauses.reached("fetch.probed", proc)
        log.rename(area / "real.log")
        log.symlink_to(area / "shadow")
        pauses.go("fetch.probed")
        pauses.reached("read.opened", proc)
        log.unlink()
        (area / "real.log").rename(log)
        pauses.go("read.opened")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    (result,) = finished(out)
    assert result["status"] == "failed" and "replaced" in result["error"], result
    assert not (tmp_path / "got" / "app.log").exists()
    assert SHADOW.decode().strip() not in everything_written(tmp_path)


@pytest.mark.parametrize(
    "transport",
    [pytest.param(t, id=t.name) for t in TRANSPORTS if t.become],
    indirect=True,  # a root-only file is read with become
)
def test_a_become_fetch_of_a_root_only_file_stores_it_root_only(
    tmp_path: Path, area: Path, transport: Transport, request: pytest.FixtureRequest
) -> None:
    (area / "app.log").write_bytes(b"private log\n")
    os.chmod(area / "app.log", 0o600)
    rb = write_runbook(tmp_path, transport, fetch_step(area))
    proc = runbook(*apply_args(rb, transport, fleet_of(request, transport)), cwd=tmp_path)
    (result,) = finished(proc.stdout)
    assert result["status"] == "ok", result
    got = tmp_path / "got" / "app.log"
    assert got.read_bytes() == b"private log\n" and stat.S_IMODE(got.stat().st_mode) == 0o600


def test_a_fetch_never_writes_more_than_the_size_it_probed() -> None:
    """Whatever the host sends (a lying host, a file that grew): the controller stops at
    the probed size and fails, and a short or altered stream fails too."""
    data = b"12345678"
    found = Found("file", size=len(data), mode=0o644, sha256=hashlib.sha256(data).hexdigest())
    taken: list[bytes] = []

    def endless() -> Iterator[bytes]:
        while True:
            yield b"\0" * 3

    with pytest.raises(TransferFailed, match="more than the 8 bytes"):
        for chunk in as_probed(endless(), "/var/log/x", found):
            taken.append(chunk)
    assert sum(map(len, taken)) <= len(data)
    with pytest.raises(TransferFailed, match="ended after 4 of its 8 bytes"):
        list(as_probed([b"1234"], "/var/log/x", found))
    with pytest.raises(TransferFailed, match="changed while it was fetched"):
        list(as_probed([b"1234", b"5670"], "/var/log/x", found))
    assert b"".join(as_probed([b"1234", b"5678"], "/var/log/x", found)) == data


def test_the_read_script_sends_at_most_the_probed_size(tmp_path: Path) -> None:
    import subprocess

    log = tmp_path / "grown.log"
    log.write_bytes(b"first part|appended later")
    done = subprocess.run(plain(READ, str(log), "10"), capture_output=True)
    assert done.returncode == 0 and done.stdout == b"first part"
    special = subprocess.run(plain(READ, "/dev/zero", "10"), capture_output=True)
    assert special.returncode == 1 and special.stdout == b""


# -- a controller that dies mid-copy -----------------------------------------------------


def private_uploads() -> set[str]:
    return set(glob.glob("/var/tmp/.runbook-*")) | set(glob.glob("/tmp/.runbook-*"))


@pytest.mark.ssh
def test_a_controller_killed_mid_copy_leaves_no_upload_on_the_host(
    tmp_path: Path, fleet: Fleet, area: Path, sudo: None
) -> None:
    """A become copy over SSH, its content on its way, the controller SIGKILLed: the
    host's private copy never had a name after it was opened, the install beside dest
    sees the content cut short and removes its temp file."""
    t = Transport("ssh-sudo", "h1", True)
    (tmp_path / "big.bin").write_bytes(os.urandom(8 << 20))
    step = f"    copy: {{src: big.bin, dest: {area / 'big.bin'}}}\n"
    rb = write_runbook(tmp_path, t, step)
    before = private_uploads()
    pauses = Pauses(tmp_path / "pauses", "stage.unlinked")
    proc = start(*apply_args(rb, t, fleet), cwd=tmp_path, env=pauses.env)
    try:
        pauses.reached("stage.unlinked", proc)
        assert private_uploads() == before  # opened, and already nameless
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    pauses.go("stage.unlinked")

    def host_side_done() -> bool:
        return not [p for p in psutil.process_iter(["cmdline"]) if _runs_for(p, area)]

    wait_for(host_side_done, timeout=30, what="the host's stage and install to end")
    assert private_uploads() == before
    assert sorted(os.listdir(area)) == ["shadow"]  # no dest, no temp beside it


def _runs_for(p: psutil.Process, area: Path) -> bool:
    return any(str(area) in arg for arg in (p.info.get("cmdline") or []))
