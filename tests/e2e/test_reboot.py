"""``reboot`` and ``wait_for: {connection: up}`` against real sshd hosts (SPEC section 10).

A fleet host "reboots" as a real one looks from the controller: the test kills its sshd
and every session it forked (``Fleet.kill``: the connection drops under the run), waits
a few seconds with nothing listening, changes the host's boot id file and starts sshd
again (same port, same host key). The runbook's reboot command only asks for that (it
touches a file the test watches), as ``shutdown -r`` asks init.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import finished, runbook, write
from tests.fleet import Fleet

pytestmark = pytest.mark.ssh

DOWN_FOR = 2.0  # seconds with nothing listening, as a reboot's


def inventory(fleet: Fleet, tmp: Path) -> Path:
    lines = [
        f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user=root "
        f"ansible_ssh_private_key_file={fleet.client_key} state={tmp / h.name}"
        for h in fleet
    ]
    return write(tmp / "hosts.ini", "[nodes]\n" + "\n".join(lines) + "\n")


def crash_when_asked(
    fleet: Fleet, name: str, request: Path, boot_id: Path | None
) -> threading.Thread:
    """When ``request`` appears: kill the host, keep it down, (new boot id,) start it."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while not request.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        fleet.kill(name)
        time.sleep(DOWN_FOR)
        if boot_id is not None:
            boot_id.write_text("boot-2\n")
        fleet.restart(name)

    thread = threading.Thread(target=watch, name=f"crash-{name}", daemon=True)
    thread.start()
    return thread


def apply(tmp: Path, fleet: Fleet, rb: Path) -> tuple[int, list[dict], str]:
    known = write(tmp / "known_hosts", fleet.known_hosts_text())
    proc = runbook(
        "apply", "--yes", "--output", "json", "--known-hosts", str(known), str(rb),
        cwd=tmp, timeout=300,
    )  # fmt: skip
    return proc.returncode, finished(proc.stdout), proc.stdout + proc.stderr


def test_a_reboot_drops_the_session_waits_for_the_host_and_checks_it_rebooted(
    tmp_path: Path, fleet_factory
) -> None:
    fleet = fleet_factory(2)
    for h in fleet:
        (tmp_path / h.name).mkdir()
        (tmp_path / h.name / "boot_id").write_text("boot-1\n")
    inventory(fleet, tmp_path)
    rb = write(
        tmp_path / "rb.yml",
        """\
name: reboot
inventory: hosts.ini
steps:
  - name: before
    hosts: h1
    run: cat {{ state }}/boot_id; echo $PPID
  - name: Reboot
    hosts: h1
    reboot:
      command: touch {{ state }}/reboot-requested
      check: cat {{ state }}/boot_id
      timeout: 60
      delay: 0.5
  - name: after
    hosts: nodes
    run: cat {{ state }}/boot_id; echo $PPID
""",
    )
    watcher = crash_when_asked(
        fleet, "h1", tmp_path / "h1" / "reboot-requested", tmp_path / "h1" / "boot_id"
    )
    code, results, out = apply(tmp_path, fleet, rb)
    watcher.join(30)
    assert code == 0, out[-3000:]
    by = {(r["step"], r["host"]): r for r in results}
    reboot = by[("Reboot", "h1")]
    assert reboot["status"] == "ok"
    assert reboot["stdout"] == "check before: boot-1\ncheck after: boot-2\n"
    before, after = by[("before", "h1")]["stdout"].split(), by[("after", "h1")]["stdout"].split()
    assert before[0] == "boot-1" and after[0] == "boot-2"
    # The session was rebuilt: the command after ran under a new executor, on a new login.
    assert before[1] != after[1]
    assert fleet["h1"].connections() >= 2
    assert by[("after", "h2")]["status"] == "ok"  # the other host never noticed


def test_a_reboot_whose_check_never_changes_times_out_saying_what_it_saw(
    tmp_path: Path, fleet_factory
) -> None:
    fleet = fleet_factory(1)
    (tmp_path / "h1").mkdir()
    (tmp_path / "h1" / "boot_id").write_text("boot-1\n")
    inventory(fleet, tmp_path)
    rb = write(
        tmp_path / "rb.yml",
        """\
name: no reboot
inventory: hosts.ini
steps:
  - name: Reboot
    hosts: h1
    reboot: {command: "true", check: "cat {{ state }}/boot_id", timeout: 2, delay: 0.5}
  - {name: after, hosts: h1, run: echo never}
""",
    )
    code, results, out = apply(tmp_path, fleet, rb)
    assert code == 1, out[-3000:]
    reboot = results[0]
    assert reboot["status"] == "timed_out"
    assert reboot["error"] == (
        "no reboot seen within 2s (last seen: up, check unchanged (boot-1): not rebooted yet)"
    )


def test_wait_for_connection_up_brings_back_a_host_whose_connection_dropped(
    tmp_path: Path, fleet_factory
) -> None:
    fleet = fleet_factory(2)
    for h in fleet:
        (tmp_path / h.name).mkdir()
    inventory(fleet, tmp_path)
    rb = write(
        tmp_path / "rb.yml",
        """\
name: crash
inventory: hosts.ini
defaults: {on_failure: continue}
steps:
  - name: crash
    hosts: h1
    run: touch {{ state }}/crash-requested; sleep 60
  - name: while it is out
    hosts: nodes
    run: echo still here
  - name: back
    hosts: nodes
    wait_for: {connection: up, timeout: 60, delay: 0.5}
  - name: after
    hosts: nodes
    run: echo back
""",
    )
    watcher = crash_when_asked(fleet, "h1", tmp_path / "h1" / "crash-requested", None)
    code, results, out = apply(tmp_path, fleet, rb)
    watcher.join(30)
    assert code == 0, out[-3000:]
    by = {(r["step"], r["host"]): r for r in results}
    assert by[("crash", "h1")]["status"] == "unreachable"
    assert by[("crash", "h1")].get("maybe_ran") is True
    held = by[("while it is out", "h1")]
    assert held["status"] == "cancelled" and "h1 unreachable since step 'crash'" in held["error"]
    assert by[("while it is out", "h2")]["status"] == "ok"
    assert by[("back", "h1")]["status"] == "ok" and by[("back", "h2")]["status"] == "ok"
    assert by[("after", "h1")]["status"] == "ok" and by[("after", "h1")]["stdout"] == "back\n"
