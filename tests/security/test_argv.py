"""No secret, env value or script text on any command line (SPEC §6, issue 12 item 1).

Any user can read every process's argv (``/proc/PID/cmdline``, ``ps``). While the
commands of a run wait on a gate, the test reads the argv of every process on the machine
— the controller and its local commands, the fleet's sshd sessions and what they start
(the targets are this machine too), ``sudo`` and the shells it starts as root or as
``nobody`` — and looks for the secret, an env value and a line of the script. The commands
also write a checksum of what they received, so the values still arrive byte-exact.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import wait_for, write
from tests.fleet import Fleet
from tests.reliability.harness import ssh_files
from tests.reliability.helpers import start_cli

NOBODY = "nobody"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may write (sticky, as /tmp): ``nobody``'s commands report
    there. The pytest tmp_path is 0700 root, which ``nobody`` cannot enter."""
    path = Path(tempfile.mkdtemp(prefix="runbook-argv-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def command_lines() -> dict[int, str]:
    """Every process's argv, NULs as spaces (kernel threads have none)."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            raw = (proc / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        out[int(proc.name)] = raw.replace(b"\0", b" ").decode("utf-8", "replace")
    return out


def leaks(needles: dict[str, str]) -> list[str]:
    return [
        f"{what} in argv of pid {pid}: {line[:300]!r}"
        for pid, line in command_lines().items()
        for what, needle in needles.items()
        if needle in line
    ]


def cli_output(directory: Path) -> str:
    return "".join((directory / f"cli.{n}").read_text() for n in ("stderr", "stdout"))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# How the step runs: plain; through sudo to root; to nobody; a script too large for bash's
# ``read`` under /bin/sh (the ``head -c`` reader); over SSH, with the host executor (the
# default transport) or a channel per command (``--transport exec``, the wrapper that
# reads the script with ``head -c`` and pipes it on to ``timeout … SHELL -c``).
# Each mode: (step fields, extra apply arguments).
MODES: dict[str, tuple[str, list[str]]] = {
    "plain": ("", []),
    "become-root": ("    become: true\n", []),
    "become-nobody": (f"    become: true\n    become_user: {NOBODY}\n", []),
    "sh-large-script": ("    shell: /bin/sh\n", []),
    "exec-plain": ("", ["--transport", "exec"]),
    "exec-become-nobody": (
        f"    become: true\n    become_user: {NOBODY}\n",
        ["--transport", "exec"],
    ),
}


@pytest.mark.ssh
@pytest.mark.parametrize("mode", list(MODES))
def test_no_secret_env_value_or_script_text_on_any_command_line(
    fleet: Fleet, tmp_path: Path, shared: Path, mode: str
) -> None:
    token = secrets.token_hex(6)
    # Distinctive parts that survive any quoting (the values also hold quotes, spaces,
    # `$` and a newline, so they are not found only as written).
    secret_core, env_core, script_core = f"SECRETx{token}", f"ENVVALx{token}", f"SCRIPTx{token}"
    secret = f"pa ss'{secret_core}\"$HOME;\nline2"
    env_value = f"it's {env_core} $(id) `x`"
    gate = shared / "gate"
    files = ssh_files(fleet, tmp_path)
    # A comment line (one YAML block line) that makes the script 20 kB.
    padding = f"# {'x' * 20_000}\n      " if mode == "sh-large-script" else ""
    fields, extra = MODES[mode]
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: argv
hosts:
  targets:
    hosts:
      localhost: {{}}
      h1: {{address: 127.0.0.1, port: {fleet["h1"].port}}}
      h2: {{address: 127.0.0.1, port: {fleet["h2"].port}}}
secrets:
  pw: {{env: RB_ARGV_SECRET}}
vars:
  app_value: {json.dumps(env_value)}
env:
  PGPASSWORD: "{{{{ pw }}}}"
steps:
  - name: wait with the values
    hosts: targets
{fields}    env:
      APP_VALUE: "{{{{ app_value }}}}"
    timeout: 60
    run: |
      {padding}label={script_core}
      d={shared}/{{{{ host.name }}}}
      printf '%s' "$PGPASSWORD" | sha256sum > "$d.env-secret"
      printf '%s' {{{{ pw | quote }}}} | sha256sum > "$d.run-secret"
      printf '%s' "$APP_VALUE" | sha256sum > "$d.env-value"
      id -un > "$d.user"
      while [ ! -e {gate} ]; do sleep 0.05; done
""",
    )
    needles = {
        "the secret": secret_core,
        "the env value": env_core,
        "the script": script_core,
        "the secret's first line": secret.splitlines()[0],
    }
    proc = start_cli(
        "apply", "--yes", "--output", "json", *files.cli_args(), *extra, str(rb),
        cwd=tmp_path, env={"RB_ARGV_SECRET": secret},
    )  # fmt: skip
    hosts = ["localhost", "h1", "h2"]
    try:
        try:  # a "no hang" bound: the cores are shared and often loaded
            wait_for(
                lambda: (
                    all((shared / f"{h}.user").exists() for h in hosts) or proc.poll() is not None
                ),
                90,
                "every command to wait at the gate",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; CLI so far:\n{cli_output(tmp_path)}") from None
        assert proc.poll() is None, cli_output(tmp_path)
        found = []
        for _ in range(5):  # a few scans while everything sits at the gate
            found += leaks(needles)
            time.sleep(0.05)
        gate.touch()
        proc.wait(60)
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, cli_output(tmp_path)
    assert not found, "\n".join(dict.fromkeys(found))
    user = NOBODY if mode.endswith("become-nobody") else "root"
    for h in hosts:
        assert (shared / f"{h}.user").read_text().strip() == user, h
        for name, value in (("env-secret", secret), ("run-secret", secret)):
            assert (shared / f"{h}.{name}").read_text().split()[0] == sha(value), (h, name)
        assert (shared / f"{h}.env-value").read_text().split()[0] == sha(env_value), h
