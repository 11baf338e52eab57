"""The SSH execution context against real sshd servers (the fleet), via the Python API.

Fleet hosts are this machine, so remote processes are visible to ``pgrep`` here; each
test that looks for leftovers uses its own unique ``sleep`` duration.
"""

from __future__ import annotations

import getpass
import hashlib
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest

from runbook.errors import ConnectError
from runbook.model.command import Command, Outcome, Status
from runbook.model.runbook import Host
from runbook.model.spec import ExecSpec
from runbook.run.capture import Capture
from runbook.run.execute import run_command
from runbook.run.ssh.channel import kill_command, wire_command
from runbook.run.ssh.config import resolve
from runbook.run.ssh.context import SshExecutionContext, SshOptions
from runbook.run.ssh.hostkeys import HostKeyVerifier, parse
from tests.fleet import Fleet, generate_key

NO_HANG = 30.0  # seconds: an upper bound that proves "no hang", not a speed claim


@pytest.fixture(params=["session", "exec"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every SSH test runs on both transports: a host session, and a channel per command."""
    return str(request.param)


@pytest.fixture
def contexts(transport: str) -> Iterator[Callable[..., SshExecutionContext]]:
    """Make contexts (on the test's transport) closed after the test, whatever happens."""
    made: list[SshExecutionContext] = []

    def make(options: SshOptions) -> SshExecutionContext:
        ctx = SshExecutionContext(replace(options, transport=transport))
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def unique_sleep() -> str:
    """A ``sleep`` argument no other test (or parallel run) uses, to find leftovers."""
    return f"1000.{random.randrange(10**6):06d}"


def pgrep(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return out.split()


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # reported by the test, not lost in the thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


TRICKY = {
    "SPACES": "two  spaces and a\ttab",
    "QUOTES": 'it\'s "quoted"',
    "DOLLAR": "$HOME ${PATH} $(id -u)",
    "BACKTICKS": "`id -u`",
    "SEMICOLON": "a; rm -rf /nonexistent; b",
    "NEWLINES": "line1\nline2\n\nline4",
    "UNICODE": "gr\u00fc\u00dfe \u2713",
}


# -- execution ------------------------------------------------------------------------------


@pytest.mark.ssh
def test_commands_on_five_hosts_get_env_byte_exact(fleet: Fleet, contexts) -> None:
    ctx = contexts(fleet.ssh_options())
    script = "; ".join(f'printf "%s\\0" "${name}"' for name in TRICKY)
    expected = b"".join(v.encode() + b"\0" for v in TRICKY.values())

    def on_host(name: str) -> list[Outcome]:
        host = fleet.host(name)
        return [
            ctx.execute(Command("env", host, script, env=TRICKY)),
            ctx.execute(
                Command(
                    "who", host, 'printf %s "$HOSTNAME_FROM_ENV"', env={"HOSTNAME_FROM_ENV": name}
                )
            ),
            ctx.execute(Command("rc", host, "exit 3")),
        ]

    with ThreadPoolExecutor(len(fleet)) as pool:
        results = dict(zip(fleet.names, pool.map(on_host, fleet.names), strict=True))
    for name, (env, who, rc) in results.items():
        assert env.rc == 0 and env.stderr == b""
        assert env.stdout == expected
        assert who.stdout == name.encode()
        assert rc.rc == 3


@pytest.mark.ssh
def test_one_connection_per_host_reused_by_every_command(fleet_factory, contexts) -> None:
    fleet = fleet_factory(1)
    ctx = contexts(fleet.ssh_options())
    host = fleet.host("h1")
    ctx.connect(host)
    transport = ctx._conns["h1"].transport
    for i in range(10):
        assert ctx.execute(Command("s", host, f"echo {i}")).stdout == f"{i}\n".encode()
    assert ctx._conns["h1"].transport is transport
    assert fleet["h1"].connections() == 1


@pytest.mark.ssh
def test_exit_codes_propagate(fleet: Fleet, contexts) -> None:
    ctx = contexts(fleet.ssh_options())
    host = fleet.host("h2")
    for code in (0, 1, 42, 255):
        assert ctx.execute(Command("s", host, f"exit {code}")).rc == code
    # Death by signal reads as locally (Popen): rc -N.
    assert ctx.execute(Command("s", host, "kill -9 $$")).rc == -9
    result = run_command(Command("s", host, "exit 42"), ctx)
    assert result.status is Status.FAILED and result.rc == 42


@pytest.mark.ssh
def test_quick_exit_after_stderr_keeps_all_of_stderr(fleet: Fleet, contexts) -> None:
    ctx = contexts(fleet.ssh_options())
    outcome = ctx.execute(
        Command("s", fleet.host("h3"), "echo oops >&2; printf partial >&2; exit 7")
    )
    # The process-group marker line is stripped; nothing else is.
    assert outcome == Outcome(rc=7, stdout=b"", stderr=b"oops\npartial")


@pytest.mark.ssh
def test_stdin_is_closed(fleet: Fleet, contexts) -> None:
    ctx = contexts(fleet.ssh_options())
    outcome = ctx.execute(
        Command("s", fleet.host("h3"), "cat; echo done", spec=ExecSpec(timeout=20))
    )
    assert outcome.rc == 0 and outcome.stdout == b"done\n" and not outcome.timed_out


@pytest.mark.ssh
def test_ten_megabytes_on_both_streams_arrive_complete(fleet: Fleet, contexts) -> None:
    # Both streams at once: reading one to EOF before the other would deadlock once the
    # channel window fills (paramiko #448, #1815).
    # Every byte streams through on_output; the outcome keeps the capped form.
    ctx = contexts(fleet.ssh_options())
    cmd = "seq 1 1300000 >&2 & seq 1 1400000; wait"
    seen = {"stdout": bytearray(), "stderr": bytearray()}
    outcome = ctx.execute(
        Command("s", fleet.host("h4"), cmd, spec=ExecSpec(timeout=NO_HANG)),
        lambda name, chunk: seen[name].extend(chunk),
    )
    out = subprocess.run(["seq", "1", "1400000"], capture_output=True).stdout
    err = subprocess.run(["seq", "1", "1300000"], capture_output=True).stdout
    assert outcome.rc == 0
    assert len(seen["stdout"]) == len(out) > 10_000_000
    assert hashlib.sha256(seen["stdout"]).digest() == hashlib.sha256(out).digest()
    assert hashlib.sha256(seen["stderr"]).digest() == hashlib.sha256(err).digest()
    for name, data in (("stdout", out), ("stderr", err)):
        capture = Capture()
        capture.add(data)
        kept, dropped = capture.kept()
        assert getattr(outcome, name) == kept and outcome.dropped[name] == dropped > 0


@pytest.mark.ssh
def test_become_runs_through_sudo(fleet: Fleet, contexts, sudo) -> None:
    ctx = contexts(fleet.ssh_options())
    host = fleet.host("h5")
    as_root = ctx.execute(
        Command("s", host, 'id -u; printf %s "$X"', env={"X": "a b"}, spec=ExecSpec(become=True))
    )
    assert (as_root.rc, as_root.stdout) == (0, b"0\na b")
    as_nobody = ctx.execute(
        Command("s", host, "id -un", spec=ExecSpec(become=True, become_user="nobody"))
    )
    assert (as_nobody.rc, as_nobody.stdout) == (0, b"nobody\n")


# -- timeouts and kills ---------------------------------------------------------------------


@pytest.mark.ssh
@pytest.mark.parametrize("become_user", [None, "nobody"])
def test_timeout_kills_the_remote_process_tree(
    fleet: Fleet, contexts, become_user, request: pytest.FixtureRequest
) -> None:
    if become_user is not None:
        request.getfixturevalue("sudo")
    ctx = contexts(fleet.ssh_options())
    duration = unique_sleep()
    command = Command(
        "slow",
        fleet.host("h1"),
        f"sleep {duration} & sleep {duration}; wait",
        spec=ExecSpec(timeout=2, become=become_user is not None, become_user=become_user),
    )
    result = run_command(command, ctx)
    assert result.status is Status.TIMED_OUT
    assert wait_until(lambda: not pgrep(f"sleep {duration}")), pgrep(f"sleep {duration}")


@pytest.mark.ssh
def test_timeout_kills_a_tree_that_ignores_term(fleet: Fleet, contexts) -> None:
    ctx = contexts(fleet.ssh_options(kill_grace=0.5))
    duration = unique_sleep()
    command = Command(
        "stubborn",
        fleet.host("h2"),
        f"trap '' TERM; sleep {duration} & sleep {duration}; wait",
        spec=ExecSpec(timeout=1),
    )
    started = time.monotonic()
    outcome = ctx.execute(command)
    assert outcome.timed_out and time.monotonic() - started < NO_HANG
    assert wait_until(lambda: not pgrep(f"sleep {duration}")), pgrep(f"sleep {duration}")


@pytest.mark.ssh
def test_kill_all_kills_running_commands(fleet: Fleet, contexts) -> None:
    ctx = contexts(fleet.ssh_options())
    duration = unique_sleep()
    runs = [
        in_thread(
            lambda name=name: ctx.execute(
                Command("s", fleet.host(name), f"sleep {duration} & sleep {duration}; wait")
            )
        )
        for name in ("h1", "h2")
    ]
    # Both trees running (two sleeps each; the script itself is on no command line),
    # so kill_all sees both.
    assert wait_until(lambda: len(pgrep(f"sleep {duration}")) == 4)
    ctx.kill_all()
    for thread, box in runs:
        thread.join(NO_HANG)
        assert not thread.is_alive()
        outcome = box["result"]
        assert isinstance(outcome, Outcome) and outcome.killed and not outcome.timed_out
    assert wait_until(lambda: not pgrep(f"sleep {duration}")), pgrep(f"sleep {duration}")
    # The connection survives a kill.
    assert ctx.execute(Command("s", fleet.host("h1"), "echo still")).stdout == b"still\n"


# -- unreachable hosts ----------------------------------------------------------------------


def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ssh
def test_refused_host_is_unreachable_and_remembered(fleet: Fleet, contexts, tmp_path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("")
    ctx = contexts(
        SshOptions(known_hosts=str(fleet.known_hosts), connect_retries=1, ssh_config=str(config))
    )
    port = _unused_port()
    host = Host(
        "down", address="127.0.0.1", port=port, user="root", identity_file=str(fleet.client_key)
    )
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        ctx.connect(host)
    assert time.monotonic() - started < NO_HANG
    assert "connection refused by 127.0.0.1:" in caught.value.message
    assert "gave up after 2 attempts" in caught.value.message
    result = run_command(Command("s", host, "true"), ctx)
    assert result.status is Status.UNREACHABLE and "refused" in result.error


@pytest.mark.ssh
def test_connect_is_retried_until_sshd_comes_up(fleet_factory, contexts) -> None:
    fleet = fleet_factory(1)
    fleet.kill("h1")
    ctx = contexts(fleet.ssh_options(connect_retries=6))
    thread, box = in_thread(lambda: ctx.execute(Command("s", fleet.host("h1"), "echo up")))
    time.sleep(0.3)
    fleet.restart("h1")
    thread.join(NO_HANG)
    assert box.get("result") == Outcome(rc=0, stdout=b"up\n"), box


@pytest.mark.ssh
def test_host_killed_mid_command_is_unreachable(fleet_factory, contexts) -> None:
    fleet = fleet_factory(1)
    ctx = contexts(fleet.ssh_options(connect_retries=0))
    duration = unique_sleep()
    host = fleet.host("h1")
    thread, box = in_thread(lambda: run_command(Command("s", host, f"sleep {duration}"), ctx))
    assert wait_until(lambda: pgrep(f"sleep {duration}"))
    fleet.kill("h1")
    thread.join(NO_HANG)
    assert not thread.is_alive()
    result = box["result"]
    assert result.status is Status.UNREACHABLE and result.attempts == 1
    assert "lost during the command" in result.error
    # The dead connection is dropped; once the host is back the next command reconnects.
    fleet.restart("h1")
    assert ctx.execute(Command("s", host, "echo back")).stdout == b"back\n"


@pytest.mark.ssh
def test_silent_peer_is_detected_by_keepalive(fleet_factory, contexts) -> None:
    fleet = fleet_factory(1)
    ctx = contexts(fleet.ssh_options(keepalive=0.5, connect_retries=0))
    duration = unique_sleep()
    host = fleet.host("h1")
    thread, box = in_thread(lambda: ctx.execute(Command("s", host, f"sleep {duration}")))
    assert wait_until(lambda: pgrep(f"sleep {duration}"))
    fleet.freeze("h1")  # TCP stays up, sshd answers nothing
    try:
        thread.join(NO_HANG)
        assert not thread.is_alive()
        assert isinstance(box.get("error"), ConnectError), box
        assert "no reply to keepalives" in box["error"].message
    finally:
        fleet.kill("h1")


# -- host keys ------------------------------------------------------------------------------


def _known_hosts_with(fleet: Fleet, path: Path, replace: str | None = None) -> int:
    """Write the fleet's known_hosts to ``path`` after two comment lines, with the entry of
    ``replace`` holding a different key. Returns that entry's line number."""
    lines = ["# managed by the test", "# second line"]
    target = 0
    for h in fleet:
        if h.name == replace:
            other = generate_key(path.parent / f"other_{h.name}")
            lines.append(f"{h.known_hosts_name} {other}")
            target = len(lines)
        else:
            lines.append(h.known_hosts_line)
    path.write_text("\n".join(lines) + "\n")
    return target


@pytest.mark.ssh
@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_host_key_is_refused_with_file_and_line(fleet, contexts, tmp_path, policy) -> None:
    known = tmp_path / "known_hosts"
    line = _known_hosts_with(fleet, known, replace="h3")
    ctx = contexts(fleet.ssh_options(known_hosts=str(known), host_key_policy=policy))
    before = fleet["h3"].connections()
    with pytest.raises(ConnectError) as caught:
        ctx.connect(fleet.host("h3"))
    assert "CHANGED" in caught.value.message
    assert f"{known}:{line}" in caught.value.message
    assert fleet["h3"].connections() == before  # refused before authenticating
    assert known.read_text().count("\n") == len(fleet) + 2  # nothing recorded


@pytest.mark.ssh
def test_unknown_host_key_is_refused_in_strict_mode_without_retry(fleet, contexts, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    ctx = contexts(fleet.ssh_options(known_hosts=str(known)))
    log_before = fleet["h4"].log_text().count("Connection from")
    with pytest.raises(ConnectError) as caught:
        ctx.connect(fleet.host("h4"))
    message = caught.value.message
    assert f"not in {known}" in message
    assert f"ssh-keyscan -p {fleet['h4'].port} 127.0.0.1 >> {known}" in message
    assert "--host-key-policy accept-new" in message
    assert wait_until(lambda: fleet["h4"].log_text().count("Connection from") == log_before + 1)
    time.sleep(0.2)
    assert fleet["h4"].log_text().count("Connection from") == log_before + 1  # not retried


@pytest.mark.ssh
def test_accept_new_records_the_key_then_strict_accepts_it(fleet, contexts, tmp_path) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # the directory does not exist yet
    ctx = contexts(fleet.ssh_options(known_hosts=str(known), host_key_policy="accept-new"))
    with ThreadPoolExecutor(2) as pool:  # two new hosts at once: both lines stay whole
        list(pool.map(lambda n: ctx.connect(fleet.host(n)), ["h1", "h2"]))
    recorded = sorted(known.read_text().splitlines())
    assert recorded == sorted([fleet["h1"].known_hosts_line, fleet["h2"].known_hosts_line])
    assert len(ctx.warnings) == 2 and all("added" in w for w in ctx.warnings)
    strict = contexts(fleet.ssh_options(known_hosts=str(known)))
    assert strict.execute(Command("s", fleet.host("h1"), "echo ok")).stdout == b"ok\n"
    assert strict.warnings == []


@pytest.mark.ssh
def test_policy_off_connects_and_warns(fleet, contexts, tmp_path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    ctx = contexts(fleet.ssh_options(known_hosts=str(known), host_key_policy="off"))
    assert ctx.execute(Command("s", fleet.host("h5"), "echo ok")).rc == 0
    assert len(ctx.warnings) == 1 and "not verified" in ctx.warnings[0]
    assert known.read_text() == ""


@pytest.mark.ssh
def test_wrong_client_key_fails_authentication_without_retry(fleet, contexts, tmp_path) -> None:
    key = tmp_path / "stranger"
    generate_key(key)
    ctx = contexts(fleet.ssh_options())
    with pytest.raises(ConnectError) as caught:
        ctx.connect(fleet.host("h2", identity_file=str(key)))
    assert "authentication failed for root@127.0.0.1" in caught.value.message
    assert "gave up" not in caught.value.message


# -- ssh_config -----------------------------------------------------------------------------


@pytest.mark.ssh
def test_proxy_jump_through_another_fleet_host(fleet, contexts, tmp_path) -> None:
    config = fleet.write_ssh_config(tmp_path / "ssh_config", jumps={"h2": "h1"})
    ctx = contexts(SshOptions(ssh_config=str(config)))
    via, target = fleet["h1"].connections(), fleet["h2"].connections()
    outcome = ctx.execute(Command("s", fleet.host("h2"), "echo jumped"))
    assert outcome == Outcome(rc=0, stdout=b"jumped\n")
    assert isinstance(ctx._conns["h2"].transport.sock, paramiko.Channel)
    assert (fleet["h1"].connections(), fleet["h2"].connections()) == (via + 1, target + 1)
    # A second host behind the same jump host reuses the jump connection.
    config.write_text(fleet.ssh_config_text(jumps={"h2": "h1", "h3": "h1"}))
    ctx2 = contexts(SshOptions(ssh_config=str(config)))
    for name in ("h2", "h3"):
        ctx2.connect(fleet.host(name))
    assert fleet["h1"].connections() == via + 2


@pytest.mark.ssh
def test_proxy_command_from_ssh_config(fleet, contexts, tmp_path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host h5\n    ProxyCommand ssh -F {fleet.ssh_config} -W %h:%p h1\n\n"
        + fleet.ssh_config_text()
    )
    via = fleet["h1"].connections()
    ctx = contexts(SshOptions(ssh_config=str(config)))
    assert ctx.execute(Command("s", fleet.host("h5"), "echo piped")).stdout == b"piped\n"
    assert fleet["h1"].connections() == via + 1


@pytest.mark.ssh
def test_unreachable_jump_host_makes_its_targets_unreachable(fleet, contexts, tmp_path) -> None:
    port = _unused_port()
    config = tmp_path / "ssh_config"
    config.write_text(
        fleet.ssh_config_text(jumps={"h4": "gone"})
        + f"Host gone\n    HostName 127.0.0.1\n    Port {port}\n"
    )
    ctx = contexts(SshOptions(ssh_config=str(config), connect_retries=0))
    result = run_command(Command("s", fleet.host("h4"), "true"), ctx)
    assert result.status is Status.UNREACHABLE
    assert result.error.startswith("via jump host gone: connection refused by 127.0.0.1:")


# -- no sshd needed -------------------------------------------------------------------------


def test_wire_command_runs_the_script_from_stdin_under_timeout(tmp_path) -> None:
    command = Command(
        "s", Host("h"), 'printf %s "$V"', env={"V": "a'b $c-s3cret"}, spec=ExecSpec(timeout=2.5)
    )
    wire, script = wire_command(command, kill_grace=3)
    assert "timeout -k 3 2.5 " in wire
    assert "s3cret" not in wire and b"s3cret" in script  # the value travels on stdin only
    default, _ = wire_command(Command("s", Host("h"), "true"), kill_grace=3)
    assert "timeout -k 3 3600 " in default
    # Run it through a local shell, stdin held open until the command ends (as the channel
    # is): the marker reports the group on stderr, output is exact.
    proc = subprocess.Popen(
        ["bash", "-c", wire], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdin.write(script)
    proc.stdin.flush()
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(30) == 0
    proc.stdin.close()
    assert out == b"a'b $c-s3cret" and err.startswith(b"RUNBOOK-PGID:")


def test_wire_command_kills_the_command_when_its_stdin_closes(tmp_path) -> None:
    """EOF on the channel's stdin means the controller is gone: nothing may run on."""
    marker = unique_sleep()
    wire, script = wire_command(
        Command("s", Host("h"), f"sleep {marker}", spec=ExecSpec(timeout=600)), kill_grace=1
    )
    proc = subprocess.Popen(
        ["bash", "-c", wire], stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    proc.stdin.write(script)
    proc.stdin.flush()
    assert wait_until(lambda: pgrep(f"sleep {marker}"))
    proc.stdin.close()
    proc.wait(NO_HANG)
    assert wait_until(lambda: not pgrep(f"sleep {marker}")), pgrep(f"sleep {marker}")


def test_kill_command_never_targets_every_process() -> None:
    for pgid in (-1, 0, 1):
        with pytest.raises(ValueError):
            kill_command(pgid, 3, become=False)
    assert "kill -TERM -4242 " in kill_command(4242, 3, become=False)


def test_known_hosts_matching(tmp_path) -> None:
    hashed = paramiko.HostKeys.hash_host("[10.0.0.1]:2222")
    text = (
        "# comment\n"
        f"{hashed} ssh-ed25519 AAAAhashed\n"
        "*.example.com,!bad.example.com ssh-ed25519 AAAAwild\n"
        "@cert-authority * ssh-ed25519 AAAAca\n"
        "[10.0.0.2]:2200 ssh-ed25519 AAAAport\n"
        "garbage\n"
    )
    entries = parse("kh", text)
    verifier = HostKeyVerifier("strict", lambda m: None)
    verifier._cache["kh"] = entries

    def lines(name: str) -> list[int]:
        return [e.line for e in verifier.lookup(name, ["kh"]) if e.marker is None]

    assert lines("[10.0.0.1]:2222") == [2]
    assert lines("web.example.com") == [3]
    assert lines("bad.example.com") == []
    assert lines("[10.0.0.2]:2200") == [5]
    assert lines("10.0.0.2") == []


def test_host_fields_override_ssh_config(tmp_path) -> None:
    config = paramiko.SSHConfig.from_text(
        "Host web\n  HostName 10.1.1.1\n  Port 2200\n  User deploy\n  ProxyJump ops@bastion:2022\n"
        "Host bastion\n  HostName 10.9.9.9\n  User nobody\n"
    )
    ep = resolve(Host("web"), config)
    assert (ep.address, ep.port, ep.user, ep.known_hosts_name) == (
        "10.1.1.1",
        2200,
        "deploy",
        "[10.1.1.1]:2200",
    )
    assert ep.jump is not None and str(ep.jump) == "ops@10.9.9.9:2022"
    assert resolve(Host("db"), config).user == getpass.getuser()  # the default user
    ep = resolve(Host("x", address="web", port=22, user="root"), config)
    assert (ep.address, ep.port, ep.user, ep.known_hosts_name) == (
        "10.1.1.1",
        22,
        "root",
        "10.1.1.1",
    )


def test_host_proxy_jump_wins_over_ssh_config(tmp_path) -> None:
    config = paramiko.SSHConfig.from_text(
        "Host web\n  HostName 10.1.1.1\n  ProxyJump ops@bastion:2022\n"
        "Host bastion\n  HostName 10.9.9.9\n  User nobody\n"
        "Host jump2\n  HostName 10.8.8.8\n  Port 2200\n"
    )
    ep = resolve(Host("web", proxy_jump="admin@jump2"), config)
    assert ep.jump is not None and str(ep.jump) == "admin@10.8.8.8:2200"  # through the config
    ep = resolve(Host("web", proxy_jump="bastion,jump2:2222"), config)
    assert ep.jump is not None and str(ep.jump).endswith("@10.8.8.8:2222")
    assert ep.jump.jump is not None and ep.jump.jump.address == "10.9.9.9"
    assert resolve(Host("web", proxy_jump="none"), config).jump is None
    assert str(resolve(Host("web"), config).jump) == "ops@10.9.9.9:2022"  # unset: the config's
    assert resolve(Host("db", proxy_jump="10.7.7.7"), None).jump.address == "10.7.7.7"


@pytest.mark.ssh
def test_proxy_jump_from_the_inventory_through_another_fleet_host(fleet, contexts, tmp_path):
    config = fleet.write_ssh_config(tmp_path / "ssh_config")
    ctx = contexts(SshOptions(ssh_config=str(config)))
    via = fleet["h1"].connections()
    host = replace(fleet.host("h2"), proxy_jump="h1")
    outcome = ctx.execute(Command("s", host, "echo jumped"))
    assert outcome == Outcome(rc=0, stdout=b"jumped\n")
    assert isinstance(ctx._conns["h2"].transport.sock, paramiko.Channel)
    assert fleet["h1"].connections() == via + 1


@pytest.mark.ssh
def test_connections_dropped_by_max_startups_are_retried(fleet_factory, contexts) -> None:
    fleet = fleet_factory(1, max_startups="1")  # sshd drops all but one pending handshake
    barrier = threading.Barrier(6)

    def connect(_: int) -> Status:
        ctx = contexts(fleet.ssh_options(connect_retries=8))
        barrier.wait()
        return run_command(Command("s", fleet.host("h1"), "true"), ctx).status

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(connect, range(6))) == [Status.OK] * 6
