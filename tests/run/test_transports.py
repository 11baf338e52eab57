"""Choosing the SSH transport: a host session where the host can run one, exec per
command where it cannot (issue 14: "a remote host without python3 uses the exec path
transparently")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.helpers import events, runbook
from tests.fleet import Fleet
from tests.reliability.harness import hosts_yaml, ssh_files


def _path_without_python(tmp: Path) -> Path:
    """A directory holding every command of /usr/bin and /bin but python."""
    bin_dir = tmp / "bin-without-python"
    bin_dir.mkdir()
    for d in ("/usr/bin", "/bin", "/usr/sbin"):
        for name in os.listdir(d):
            if name.startswith("python") or (bin_dir / name).exists():
                continue
            (bin_dir / name).symlink_to(os.path.join(d, name))
    return bin_dir


@pytest.fixture(scope="module")
def no_python_host(fleet_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nopython")
    bin_dir = _path_without_python(tmp)
    fleet: Fleet = fleet_factory(
        1, prefix="np", sshd_options={"SetEnv": f"HOME={tmp} PATH={bin_dir}"}
    )
    return fleet


def _runbook(tmp_path: Path, fleet: Fleet) -> Path:
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: transports\n"
        + hosts_yaml([("np1", fleet["np1"].port)], group="g")
        + "steps:\n  - name: where\n    hosts: g\n"
        "    run: command -v python3 || echo no-python; echo ran on $(hostname)\n"
        # A second command: under auto, a host that runs one gets no executor anyway.
        "  - name: again\n    hosts: g\n    run: echo again\n"
    )
    return rb


def _args(fleet: Fleet, tmp_path: Path) -> list[str]:
    return ssh_files(fleet, tmp_path).cli_args()


@pytest.mark.ssh
def test_a_host_without_python3_runs_commands_over_exec_with_a_warning(
    no_python_host: Fleet, tmp_path: Path
) -> None:
    rb = _runbook(tmp_path, no_python_host)
    done = runbook("apply", "--yes", "--output", "json", *_args(no_python_host, tmp_path), str(rb))
    assert done.returncode == 0, done.stderr
    result, again = [e for e in events(done.stdout) if e["event"] == "command_finished"]
    assert result["status"] == "ok" and result["stdout"].startswith("no-python\nran on ")
    assert again["status"] == "ok" and again["stdout"] == "again\n"
    assert "cannot start the runbook executor" in done.stderr
    assert "using one SSH channel per command on np1" in done.stderr


@pytest.mark.ssh
def test_transport_session_refuses_a_host_without_python3(
    no_python_host: Fleet, tmp_path: Path
) -> None:
    rb = _runbook(tmp_path, no_python_host)
    done = runbook(
        "apply", "--yes", "--output", "json", "--transport", "session",
        *_args(no_python_host, tmp_path), str(rb),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    result = next(e for e in events(done.stdout) if e["event"] == "command_finished")
    assert result["status"] == "unreachable"
    assert "needs python3" in result["error"]


@pytest.mark.ssh
@pytest.mark.parametrize("transport", ["auto", "session", "exec"])
def test_every_transport_runs_the_same_commands_byte_exact(
    fleet: Fleet, tmp_path: Path, transport: str
) -> None:
    value = 'a\'b "c" $d `e` \\f\nline2 \u00e9'
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: same\n"
        + hosts_yaml([(h.name, h.port) for h in list(fleet)[:3]], group="g")
        + "steps:\n  - name: env\n    hosts: g\n    env: {V: "
        + json.dumps(value)
        + "}\n    run: printf '%s' \"$V\"; exit 3\n    on_failure: continue\n"
    )
    args = [*_args(fleet, tmp_path), "--transport", transport]
    done = runbook("apply", "--yes", "--output", "json", *args, str(rb))
    assert done.returncode == 0, done.stderr
    results = [e for e in events(done.stdout) if e["event"] == "command_finished"]
    assert len(results) == 3
    assert {(r["rc"], r["stdout"]) for r in results} == {(3, value)}


@pytest.mark.ssh
def test_auto_starts_no_executor_for_a_host_that_runs_one_command(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The plan says how many commands each host runs: one is cheaper over exec than an
    executor's start (a round trip and a python3). The command's parent process shows
    which ran it."""
    one, two = list(fleet)[:2]
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: auto\n"
        + hosts_yaml([(one.name, one.port), (two.name, two.port)], group="g")
        + "steps:\n"
        f"  - name: first\n    hosts: g\n    run: tr '\\0' ' ' < /proc/$PPID/cmdline\n"
        f"  - name: second\n    hosts: {two.name}\n    run: tr '\\0' ' ' < /proc/$PPID/cmdline\n"
    )
    done = runbook("apply", "--yes", "--output", "json", *_args(fleet, tmp_path), str(rb))
    assert done.returncode == 0, done.stderr
    parents = {
        (e["step"], e["host"]): e["stdout"]
        for e in events(done.stdout)
        if e["event"] == "command_finished"
    }
    assert len(parents) == 3
    assert "python" not in parents[("first", one.name)]
    assert "python" in parents[("first", two.name)] and "python" in parents[("second", two.name)]
