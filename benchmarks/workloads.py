"""The files each benchmark needs, and the command line of every tool on every workload.

Everything is generated into a scratch directory: runbooks, inventories, the ControlMaster
script, ansible and pyinfra projects. Every tool does the same remote work: the workload's
commands, run by the login shell of ``root`` on each fleet host, in order, a step
finishing on every host before the next starts.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# The SSH workloads of issue 6: W1 one short step, W2 ten sequential steps, W3 one long step.
WORKLOADS: dict[str, list[str]] = {
    "W1": ["echo hello"],
    "W2": [f"echo step-{k} $(hostname)" for k in range(1, 11)],
    "W3": ["sleep 1"],
}


def runbook_command(spec: str | None) -> list[str]:
    """``--runbook CMD`` or the ``runbook`` script beside this interpreter (no pyenv shim)."""
    if spec:
        return shlex.split(spec)
    beside = Path(sys.executable).parent / "runbook"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("runbook")
    return [found] if found else [sys.executable, "-m", "runbook"]


@dataclass(frozen=True)
class Variant:
    """One runbook under test: the command that starts it and options for ``apply``.

    ``--runbook "runbook --transport exec"``: the words after the last one that names
    runbook (``runbook``, a path ending in ``/runbook``, or the module after ``-m``) are
    options of ``apply``, put after ``apply`` on its command line; other subcommands
    (``--version``, ``validate``, ``plan``) run without them.
    """

    label: str
    command: list[str]
    apply_args: list[str]

    @classmethod
    def parse(cls, name: str, spec: str | None) -> Variant:
        words = runbook_command(spec)
        if words[0] == "runbook":  # the script beside this python, not a pyenv shim
            words = runbook_command(None) + words[1:]
        last = max(
            (
                i
                for i, w in enumerate(words)
                if w == "runbook"
                or w.endswith("/runbook")
                or (i > 0 and words[i - 1] == "-m" and w.split(".")[0] == "runbook")
            ),
            default=len(words) - 1,
        )
        command, extra = words[: last + 1], words[last + 1 :]
        return cls(" ".join([name, *extra]), command, extra)

    def apply(self, *args: str) -> list[str]:
        return [*self.command, "apply", *self.apply_args, *args]


def _q(s: str) -> str:
    return json.dumps(s)  # a JSON string is a YAML double-quoted scalar


def ssh_runbook(path: Path, name: str, hosts: list[str], steps: list[str]) -> Path:
    lines = [f"name: {_q(name)}", "hosts:", f"  fleet: [{', '.join(hosts)}]", "steps:"]
    for k, cmd in enumerate(steps, 1):
        lines += [f"  - name: step-{k}", "    hosts: fleet", f"    run: {_q(cmd)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def local_runbook(path: Path, count: int, shell: str) -> Path:
    """``count`` local hosts in one group, one step ``true``: ``count`` local commands."""
    lines = ["name: local commands", "hosts:", "  local:", "    hosts:"]
    lines += [f"      l{i}: {{connection: local}}" for i in range(1, count + 1)]
    lines += [
        "steps:",
        "  - name: run true",
        "    hosts: local",
        f"    shell: {shell}",
        '    run: "true"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def plan_runbook(directory: Path, hosts: int, steps: int) -> Path:
    """A realistic plan workload: an INI inventory of ``hosts`` hosts in 10 groups with
    host and group vars; ``steps`` steps with templated commands, env and a ``when``."""
    inv = []
    per = max(1, hosts // 10)
    for g in range(10):
        inv.append(f"[seg{g}]")
        for i in range(g * per, min(hosts, (g + 1) * per) if g < 9 else hosts):
            inv.append(
                f"node{i:05d} ansible_host=192.0.2.{i % 250 + 1} ansible_port={2200 + i % 50} "
                f"data_dir=/data/primary/gpseg{i}"
            )
        inv += [f"[seg{g}:vars]", f"segment_group={g}", ""]
    (directory / "inventory.ini").write_text("\n".join(inv))
    lines = [
        "name: plan benchmark",
        "inventory: inventory.ini",
        "vars: {gphome: /usr/local/greenplum-db, port_base: 6000}",
        "env:",
        '  GPHOME: "{{ gphome }}"',
        '  NODE: "{{ host.name }}"',
        "steps:",
    ]
    for k in range(1, steps + 1):
        lines += [
            f"  - name: step {k}",
            "    hosts: all",
            f'    env: {{PGPORT: "{{{{ port_base + {k} }}}}"}}',
            f"    run: pg_ctl -D {{{{ data_dir | quote }}}} -o '-p {{{{ port_base + {k} }}}}' "
            f"status --step {k} --group {{{{ segment_group }}}} --on {{{{ host.address }}}}",
        ]
        if k % 5 == 0:
            lines.append("    when: segment_group is defined")
    path = directory / "plan.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def small_runbook(path: Path) -> Path:
    """For ``runbook validate`` start-up: one host, three steps, templates and env."""
    path.write_text(
        "name: small\n"
        "hosts:\n  local: {hosts: {localhost: {}}, vars: {greeting: hi}}\n"
        "vars: {app: demo}\n"
        'env: {APP: "{{ app }}"}\n'
        "steps:\n"
        '  - {name: one, hosts: local, run: "echo {{ greeting }} {{ host.name }}"}\n'
        '  - {name: two, hosts: local, run: "echo $APP", env: {STAGE: "2"}}\n'
        '  - {name: three, local: true, run: "echo {{ runbook.name | quote }}"}\n'
    )
    return path


# -- SSH tools ------------------------------------------------------------------------------


@dataclass
class FleetView:
    """What the tools need to know about the fleet (``tests.fleet.Fleet``)."""

    ssh_config: Path
    known_hosts: Path
    client_key: Path
    ports: dict[str, int]

    @classmethod
    def of(cls, fleet: Any) -> FleetView:
        return cls(
            Path(fleet.ssh_config),
            Path(fleet.known_hosts),
            Path(fleet.client_key),
            {h.name: h.port for h in fleet},
        )


def runbook_ssh_argv(
    rb: Variant, file: Path, hosts: int, fleet: FleetView, forks: int | None = None
) -> list[str]:
    return rb.apply(
        "--yes",
        "--forks",
        str(forks or hosts),
        "--ssh-config",
        str(fleet.ssh_config),
        "--known-hosts",
        str(fleet.known_hosts),
        str(file),
    )


def hosts_json(directory: Path, hosts: list[str], fleet: FleetView) -> Path:
    """The host list of the paramiko loop and of the Fabric and parallel-ssh anchors."""
    spec = [
        {
            "name": h,
            "address": "127.0.0.1",
            "port": fleet.ports[h],
            "user": "root",
            "key": str(fleet.client_key),
        }
        for h in hosts
    ]
    path = directory / f"hosts-{len(hosts)}.json"
    path.write_text(json.dumps(spec))
    return path


def paramiko_loop_argv(
    directory: Path, hosts: list[str], steps: list[str], fleet: FleetView
) -> list[str]:
    return [
        sys.executable,
        str(HERE / "paramiko_loop.py"),
        str(hosts_json(directory, hosts, fleet)),
        str(fleet.known_hosts),
        *steps,
    ]


@functools.cache
def has_module(python: Path, module: str) -> bool:
    """Whether ``python`` (an anchors venv's) can import ``module``."""
    probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def fabric_argv(
    directory: Path, hosts: list[str], steps: list[str], fleet: FleetView, bin_dir: Path
) -> list[str] | None:
    """Fabric 3's ``ThreadingGroup`` (``fabric_loop.py``), run by the anchors venv."""
    python = bin_dir / "python"
    if not has_module(python, "fabric"):
        return None
    return [
        str(python),
        str(HERE / "fabric_loop.py"),
        str(hosts_json(directory, hosts, fleet)),
        str(fleet.known_hosts),
        *steps,
    ]


def pssh_argv(
    directory: Path,
    hosts: list[str],
    steps: list[str],
    fleet: FleetView,
    bin_dir: Path,
    pool_size: int | None = None,
) -> list[str] | None:
    """parallel-ssh's ``ParallelSSHClient`` (``pssh_loop.py``), run by the anchors venv."""
    python = bin_dir / "python"
    if not has_module(python, "pssh.clients"):
        return None
    return [
        str(python),
        str(HERE / "pssh_loop.py"),
        "--pool-size",
        str(pool_size or len(hosts)),
        str(hosts_json(directory, hosts, fleet)),
        str(fleet.known_hosts),
        *steps,
    ]


class ControlMasters:
    """OpenSSH masters, opened before timing; the timed script multiplexes over them.

    Each master is an ``ssh -N`` child of this process (never ``-f``), so ``close`` ends
    exactly the processes it started.
    """

    def __init__(self, fleet: FleetView, hosts: list[str]) -> None:
        import tempfile

        self.fleet = fleet
        # A short directory: a unix socket path must fit in 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="rbcm-", dir="/tmp"))
        self.procs: list[subprocess.Popen[bytes]] = []
        for h in hosts:
            self.procs.append(
                subprocess.Popen(
                    ["ssh", "-F", str(fleet.ssh_config), "-N", *self.options("yes"), h],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 60
        while not all((self.dir / h).exists() for h in hosts):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.close()
                raise RuntimeError("ControlMaster: masters did not come up")
            time.sleep(0.05)

    def options(self, master: str) -> list[str]:
        return ["-o", f"ControlMaster={master}", "-o", f"ControlPath={self.dir}/%n"]

    def script(self, path: Path, hosts: list[str], steps: list[str]) -> list[str]:
        ssh = shlex.join(["ssh", "-F", str(self.fleet.ssh_config), *self.options("no")])
        lines = ["#!/bin/bash", "rc=0"]
        for step in steps:
            lines.append("pids=()")
            lines += [f"{ssh} {h} {shlex.quote(step)} </dev/null & pids+=($!)" for h in hosts]
            lines.append('for p in "${pids[@]}"; do wait "$p" || rc=1; done')
        lines.append("exit $rc")
        path.write_text("\n".join(lines) + "\n")
        return ["/bin/bash", str(path)]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def anchors_bin(spec: str | None) -> Path | None:
    """The separate venv that holds the anchors: ansible-core, pyinfra, Fabric and
    parallel-ssh (README: "Anchors")."""
    for candidate in (spec, os.environ.get("RUNBOOK_BENCH_ANCHORS"), "~/.venvs/runbook-anchors"):
        if candidate:
            path = Path(candidate).expanduser() / "bin"
            if path.is_dir():
                return path
    return None


def ansible_argv(
    directory: Path, hosts: list[str], steps: list[str], fleet: FleetView, bin_dir: Path
) -> tuple[list[str], dict[str, str]] | None:
    exe = bin_dir / "ansible-playbook"
    if not exe.exists():
        return None
    d = directory / f"ansible-{len(hosts)}-{len(steps)}"
    d.mkdir(exist_ok=True)
    (d / "inventory.ini").write_text("[fleet]\n" + "\n".join(hosts) + "\n")
    tasks = "".join(
        f"    - name: step-{k}\n      ansible.builtin.shell: {_q(cmd)}\n"
        for k, cmd in enumerate(steps, 1)
    )
    (d / "playbook.yml").write_text(f"- hosts: fleet\n  gather_facts: false\n  tasks:\n{tasks}")
    # Pipelining on, forks = hosts, OpenSSH with its default ControlPersist: what a tuned
    # ansible does. The control sockets live in a per-run directory (the run script), so
    # no run reuses another's connections.
    (d / "ansible.cfg").write_text(
        "[defaults]\n"
        f"forks = {len(hosts)}\n"
        "gathering = explicit\n"
        "host_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\n"
        "retry_files_enabled = False\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = -F {fleet.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
    )
    # Each run: fresh control dir, run, then close the masters it left (by their sockets).
    run = d / "run.sh"
    run.write_text(
        "#!/bin/bash\n"
        "cp=$(mktemp -d /tmp/rbans-XXXXXX)\n"
        f'ANSIBLE_SSH_CONTROL_PATH_DIR="$cp" {shlex.quote(str(exe))} '
        f"-i {d / 'inventory.ini'} {d / 'playbook.yml'}\n"
        "rc=$?\n"
        'for s in "$cp"/*; do [ -S "$s" ] && '
        f'ssh -F {fleet.ssh_config} -o ControlPath="$s" -O exit x 2>/dev/null; done\n'
        'rm -rf "$cp"\n'
        "exit $rc\n"
    )
    env = {"ANSIBLE_CONFIG": str(d / "ansible.cfg"), "ANSIBLE_HOME": str(d / "home")}
    return ["/bin/bash", str(run)], env


def pyinfra_argv(
    directory: Path, hosts: list[str], steps: list[str], fleet: FleetView, bin_dir: Path
) -> tuple[list[str], dict[str, str]] | None:
    exe = bin_dir / "pyinfra"
    if not exe.exists():
        return None
    d = directory / f"pyinfra-{len(hosts)}-{len(steps)}"
    d.mkdir(exist_ok=True)
    data = {
        "ssh_user": "root",
        "ssh_key": str(fleet.client_key),
        "ssh_known_hosts_file": str(fleet.known_hosts),
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    }
    inventory = [(h, {"ssh_hostname": "127.0.0.1", "ssh_port": fleet.ports[h]}) for h in hosts]
    (d / "inventory.py").write_text(f"fleet = ({inventory!r}, {data!r})\n")
    ops = "".join(
        f"server.shell(name={f'step-{k}'!r}, commands=[{cmd!r}])\n"
        for k, cmd in enumerate(steps, 1)
    )
    (d / "deploy.py").write_text(f"from pyinfra.operations import server\n\n{ops}")
    return [
        str(exe),
        "-y",
        "--parallel",
        str(len(hosts)),
        str(d / "inventory.py"),
        str(d / "deploy.py"),
    ], {}
