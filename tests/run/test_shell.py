"""``runbook.run.shell``: env values reach the command byte-exact, through a real bash.

Each value is checked twice: ``printf '%s' "$VAR"`` (what a command sees when it expands
the variable) and the process environment dumped with ``env -0`` (what a child program
inherits). Expectations are the Python strings themselves, encoded as UTF-8.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess

import pytest

from runbook.model.command import Command, Status
from runbook.model.runbook import Host
from runbook.model.spec import ExecSpec
from runbook.run import shell
from runbook.run.contexts.local import LocalExecutionContext
from runbook.run.execute import run_command

LOCAL = Host("localhost", connection="local")

NASTY = {
    "spaces": "a value  with   spaces",
    "single_quote": "it's",
    "double_quote": 'say "hi"',
    "both_quotes": """'"'"'""",
    "dollar": "$HOME ${PATH} $(id) $1 $$",
    "backticks": "`touch /tmp/runbook-should-not-exist`",
    "semicolon": "a; echo injected; b",
    "ampersand_pipe": "a && b || c | d & e",
    "newlines": "line1\nline2\n\nline4",
    "trailing_newline": "ends with a newline\n",
    "only_newlines": "\n\n",
    "cr_tab": "tab\there\rcarriage",
    "unicode": "héllo wörld ✓ 日本語 🎉",
    "glob": "* ? [a-z] ~",
    "backslashes": "C:\\path\\n\\\\",
    "leading_dash": "-n -e",
    "empty": "",
    "history_bang": "!! !$ !-1",
    "braces": "{a,b} {{ x }} {% y %}",
    "redirects": "> /tmp/runbook-should-not-exist < /dev/null 2>&1",
}


def _command(cmd: str, env: dict[str, str], **kw) -> Command:
    return Command(step="s", host=LOCAL, cmd=cmd, env=env, spec=ExecSpec(timeout=30, **kw))


def _run(cmd: str, env: dict[str, str], **kw):
    return LocalExecutionContext().execute(_command(cmd, env, **kw))


@pytest.mark.parametrize("name", sorted(NASTY))
def test_env_value_arrives_byte_exact_via_printf(name):
    value = NASTY[name]
    out = _run("printf '%s' \"$V\"", {"V": value})
    assert out.rc == 0, out.stderr
    assert out.stdout == value.encode("utf-8")


def test_all_values_at_once_arrive_in_the_child_environment():
    env = {f"RB_{k.upper()}": v for k, v in NASTY.items()}
    out = _run("env -0", env)
    assert out.rc == 0, out.stderr
    seen = dict(item.split(b"=", 1) for item in out.stdout.split(b"\0") if item and b"=" in item)
    for k, v in env.items():
        assert seen[k.encode()] == v.encode("utf-8"), k


def test_values_are_data_not_code(tmp_path):
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}) `touch {marker}`; touch {marker}"
    out = _run("printf '%s' \"$V\"", {"V": value})
    assert out.stdout == value.encode()
    assert not marker.exists()


def test_env_is_exported_not_just_set():
    # A variable that is only set (not exported) would be empty in a child process.
    out = _run("python3 -c 'import os,sys; sys.stdout.write(os.environ[\"V\"])'", {"V": "x y"})
    assert out.stdout == b"x y"


def test_env_works_with_a_posix_sh_too():
    if not shutil.which("sh"):
        pytest.skip("no /bin/sh")
    value = 'it\'s "$x"\n; `y`'
    out = _run("printf '%s' \"$V\"", {"V": value}, shell="/bin/sh")
    assert out.stdout == value.encode()


def test_script_without_env_is_the_command_itself():
    c = _command("echo hi", {})
    assert shell.script(c) == "echo hi"


def test_script_exports_each_value_quoted():
    c = _command("run", {"A": "x y", "B": "it's"})
    # shlex.quote by hand: 'x y' and 'it'"'"'s'
    assert shell.script(c) == "export A='x y' B='it'\"'\"'s'\nrun"


def test_the_script_travels_on_stdin_never_in_argv():
    c = _command("echo $A", {"A": "hunter2-value"})
    run = shell.invocation(c)
    assert not any("hunter2" in a or "echo" in a for a in run.argv)
    assert b"hunter2-value" in run.stdin and b"echo $A" in run.stdin


@pytest.mark.parametrize("sh", ["/bin/bash", "/bin/sh"])
@pytest.mark.parametrize("size", [10, 20_000])
def test_invocation_round_trips_through_a_real_shell(sh, size):
    """Both readers (bash's builtin, head -c for other shells and big scripts) give the
    script byte-exact, and the command's own stdin is empty."""
    value = NASTY["both_quotes"] + NASTY["dollar"] + "x" * size
    c = _command("printf '%s' \"$V\"; cat", {"V": value}, shell=sh)
    run = shell.invocation(c)
    out = subprocess.run(run.argv, input=run.stdin, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == value.encode()


def test_become_wraps_argv_in_sudo_n():
    c = _command("whoami", {"A": "1"}, become=True)
    run = shell.invocation(c)
    assert run.argv[:3] == ["sudo", "-n", "--"]
    assert run.argv[3:5] == ["/bin/bash", "-c"]
    assert run.stdin.startswith(b"export A=1\nwhoami")


def test_become_user_passes_dash_u():
    c = _command("whoami", {}, become=True, become_user="postgres")
    assert shell.invocation(c).argv[:5] == ["sudo", "-n", "-u", "postgres", "--"]


def _sudo_to_nobody_works() -> bool:
    if not shutil.which("sudo"):
        return False
    try:
        argv = ["sudo", "-n", "-u", "nobody", "true"]
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _sudo_to_nobody_works(), reason="needs passwordless sudo -u nobody")
def test_become_env_survives_sudo():
    # sudo resets the environment; the exports inside the shell must still arrive.
    value = NASTY["newlines"] + NASTY["single_quote"]
    out = _run('printf \'%s|\' "$(id -u)" "$V"', {"V": value}, become=True, become_user="nobody")
    assert out.rc == 0, out.stderr
    assert out.stdout == f"{pwd.getpwnam('nobody').pw_uid}|{value}|".encode()


def test_run_command_reports_ok_with_output():
    res = run_command(_command("printf out; printf err >&2", {}), LocalExecutionContext())
    assert res.status is Status.OK
    assert (res.rc, res.stdout, res.stderr, res.attempts) == (0, "out", "err", 1)


def test_invalid_utf8_output_is_replaced_not_fatal():
    res = run_command(_command("printf '\\377ok'", {}), LocalExecutionContext())
    assert res.status is Status.OK
    assert res.stdout == "\ufffdok"
