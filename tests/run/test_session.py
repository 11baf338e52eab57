"""Host sessions: the executor (runbook/remote/executor.py) and its controller side.

Most tests run the executor on this machine through pipes, started as sshd would start
it (``/bin/sh -c BOOTSTRAP``); a few go through real sshd (the fleet) on a raw paramiko
channel. Leftover processes are found with ``pgrep -f`` on a unique ``sleep`` argument.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runbook.run.capture import OUTPUT_CAP as CAP
from runbook.run.capture import Capture
from runbook.run.ssh.session import (
    ChannelStream,
    HostSession,
    SessionBroken,
    SessionError,
    SessionLost,
    SessionRequest,
    SessionResult,
    SessionUnavailable,
    bootstrap_command,
    encode_request,
    local_session,
    open_channel_session,
)

NO_HANG = 30.0  # an upper bound that proves "no hang", not a speed claim
REPO = Path(__file__).resolve().parents[2]


def unique_sleep() -> str:
    """A ``sleep`` argument no other test uses, to find leftovers with pgrep."""
    return f"1000.{random.randrange(10**6):06d}"


def pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
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


def kill_leftovers(marker: str) -> None:
    for pid in pgrep(marker):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def sessions() -> Iterator[Callable[..., HostSession]]:
    """Make local sessions that are closed after the test, whatever happens."""
    made: list[HostSession] = []

    def make(**kwargs: object) -> HostSession:
        session = local_session(**kwargs)  # type: ignore[arg-type]
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


@pytest.fixture
def session(sessions: Callable[..., HostSession]) -> HostSession:
    return sessions()


def run(session: HostSession, script: str, **fields: object) -> SessionResult:
    return session.run(SessionRequest(script, **fields))  # type: ignore[arg-type]


# -- basics -------------------------------------------------------------------------------


def test_output_rc_and_stderr_are_reported_separately(session: HostSession) -> None:
    result = run(session, "echo out; echo err >&2; exit 3")
    assert (result.rc, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert not result.timed_out and not result.killed and not result.output_abandoned
    assert result.pid > 1 and result.pid != session.pid


def test_a_posix_shell_gets_the_script_too(session: HostSession) -> None:
    result = run(session, 'echo "$0"; x=1; echo "x=$x"', shell="/bin/sh")
    assert result.rc == 0
    assert result.stdout.splitlines()[1] == b"x=1"


def test_a_missing_shell_is_rc_127_with_a_message(session: HostSession) -> None:
    result = run(session, "true", shell="/nonexistent/shell")
    assert result.rc == 127
    assert b"/nonexistent/shell" in result.stderr
    assert run(session, "echo still here").stdout == b"still here\n"


def test_exit_by_signal_is_minus_the_signal(session: HostSession) -> None:
    assert run(session, "kill -9 $$").rc == -9
    assert run(session, "kill -TERM $$").rc == -15


def test_the_commands_stdin_is_empty(session: HostSession) -> None:
    result = run(session, 'cat; echo "cat=$?"; read -r x; echo "read=$?"; wc -c </dev/stdin')
    assert result.stdout.split() == [b"cat=0", b"read=1", b"0"]


def test_children_get_default_sigpipe(session: HostSession) -> None:
    # Python ignores SIGPIPE; a child that inherited that would see EPIPE instead of dying,
    # and `yes` would loop printing "write error" for ever.
    result = run(session, "yes | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}", timeout=NO_HANG)
    assert result.stdout == b"141\n"  # 128 + SIGPIPE


def test_env_values_arrive_byte_exact(session: HostSession) -> None:
    values = {
        "QUOTES": 'it\'s "quoted" `backticks`',
        "DOLLARS": "$HOME ${PATH} $(id) $((1+1))",
        "NEWLINES": "line1\nline2\n\nline4\n",
        "UNICODE": "café ☃ 日本語",
        "BACKSLASH": "a\\b\\\\c\\n",
        "SEMI": "; rm -rf / #",
        "EMPTY": "",
        "SPACES": "  lead and trail  ",
    }
    script = "".join(f'printf "%s\\0" "${name}"\n' for name in values)
    result = run(session, script, env=values)
    assert result.rc == 0, result.stderr
    assert result.stdout.split(b"\0")[:-1] == [v.encode() for v in values.values()]


def test_env_that_no_process_can_carry_is_refused() -> None:
    for env in ({"A=B": "x"}, {"": "x"}, {"A": "nul\0byte"}):
        with pytest.raises(ValueError):
            encode_request(SessionRequest("true", env=env))
    with pytest.raises(ValueError):
        encode_request(SessionRequest("true", shell="bash"))


def test_a_run_on_a_session_never_started_is_an_error() -> None:
    with pytest.raises(SessionError):
        HostSession(stream=None).run(SessionRequest("true"))  # type: ignore[arg-type]


# -- concurrency and output ---------------------------------------------------------------


def test_concurrent_commands_keep_their_own_output(session: HostSession) -> None:
    """Many commands at once, interleaving chunks on one channel: each result and each
    command's streamed chunks are exactly its own output."""

    def one(i: int) -> None:
        chunks: list[bytes] = []
        lines = 200 + 500 * (i % 4)
        result = session.run(
            SessionRequest(f"for j in $(seq {lines}); do echo cmd-{i}-line-$j; done; exit {i}"),
            on_output=lambda name, chunk: chunks.append(chunk) if name == "stdout" else None,
        )
        expected = b"".join(b"cmd-%d-line-%d\n" % (i, j) for j in range(1, lines + 1))
        assert result.rc == i
        assert result.stdout == expected
        assert b"".join(chunks) == expected

    threads = [in_thread(lambda i=i: one(i)) for i in range(16)]
    for thread, box in threads:
        thread.join(NO_HANG)
        assert "error" not in box, box.get("error")
        assert not thread.is_alive()


def test_output_streams_while_the_command_runs(session: HostSession) -> None:
    marker = unique_sleep()
    seen = threading.Event()
    request = SessionRequest(f"echo first; sleep {marker}")

    def on_output(name: str, chunk: bytes) -> None:
        if name == "stdout" and b"first" in chunk:
            seen.set()

    thread, box = in_thread(lambda: session.run(request, on_output))
    assert seen.wait(NO_HANG), "no output before the command ended"
    assert thread.is_alive()
    session.kill(request.id)
    thread.join(NO_HANG)
    assert box["result"].killed  # type: ignore[attr-defined]


def test_binary_and_50mb_outputs_arrive_intact(session: HostSession, tmp_path: Path) -> None:
    """Both streams at once, 50 MB each: no deadlock, every byte streamed intact; the
    result keeps the capped form (runbook.run.capture), the rest counted."""
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 16 + os.urandom(50_000_000))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    seen = {"stdout": hashlib.sha256(), "stderr": hashlib.sha256()}
    request = SessionRequest(f"cat {data}; cat {data} >&2", timeout=NO_HANG * 4)
    result = session.run(request, lambda name, chunk: seen[name].update(chunk))
    assert result.rc == 0
    assert seen["stdout"].hexdigest() == digest and seen["stderr"].hexdigest() == digest
    capture = Capture()
    capture.add(data.read_bytes())
    kept, dropped = capture.kept()
    assert len(kept) < 2 * CAP and dropped > 48_000_000
    for text, name in ((result.stdout, "stdout"), (result.stderr, "stderr")):
        assert result.dropped[name] == dropped
        assert hashlib.sha256(text).digest() == hashlib.sha256(kept).digest()


def test_a_slow_consumer_loses_nothing(session: HostSession) -> None:
    """The executor stops reading a command's pipes while its output waits for the
    channel (back-pressure instead of unbounded memory), and resumes: every byte arrives."""
    first = threading.Event()
    script = "for i in $(seq 200000); do echo line-$i; done"
    chunks: list[bytes] = []

    def slow(name: str, chunk: bytes) -> None:
        chunks.append(chunk)
        if not first.is_set():
            first.set()
            time.sleep(1.0)  # the channel fills up behind this callback

    result = session.run(SessionRequest(script, timeout=NO_HANG * 4), on_output=slow)
    expected = b"".join(b"line-%d\n" % i for i in range(1, 200001))
    assert result.rc == 0 and b"".join(chunks) == expected


def test_a_background_child_holding_stdout_neither_hangs_nor_leaks(session: HostSession) -> None:
    """ssh waits for the pipes' EOF; the executor does too, but only for ``drain``
    seconds after the shell exits. What the child writes later goes nowhere, never into
    the next command's result, and the finished command's child is not killed."""
    marker = unique_sleep()
    started = time.monotonic()
    result = run(session, f"(sleep 0.5; echo LATE; sleep {marker}) & echo first", drain=0.2)
    assert time.monotonic() - started < NO_HANG
    assert result.stdout == b"first\n"
    assert result.output_abandoned
    try:
        assert run(session, "sleep 1; echo second").stdout == b"second\n"
        assert pgrep(marker), "the finished command's background child was killed"
    finally:
        kill_leftovers(marker)


def test_output_a_background_child_writes_within_drain_is_kept(session: HostSession) -> None:
    result = run(session, "(sleep 0.2; echo late) & echo first", drain=NO_HANG)
    assert result.stdout == b"first\nlate\n"
    assert not result.output_abandoned


# -- deadlines and kills ------------------------------------------------------------------


def test_timeout_kills_the_whole_group_even_what_ignores_term(session: HostSession) -> None:
    marker = unique_sleep()
    result = run(
        session, f"(trap '' TERM; sleep {marker}) & sleep {marker}", timeout=0.5, kill_grace=0.5
    )
    assert result.timed_out and not result.killed
    assert result.rc == -15
    assert wait_until(lambda: not pgrep(marker), 5.0), "grandchild survived the timeout"


def test_kill_request_ends_the_group(session: HostSession) -> None:
    marker = unique_sleep()
    request = SessionRequest(f"sleep {marker} & wait")
    thread, box = in_thread(lambda: session.run(request))
    assert wait_until(lambda: pgrep(marker))
    session.kill(request.id)
    thread.join(NO_HANG)
    result = box["result"]
    assert isinstance(result, SessionResult)
    assert result.killed and not result.timed_out and result.rc == -15
    assert wait_until(lambda: not pgrep(marker), 5.0)
    session.kill(request.id)  # finished: a no-op
    assert run(session, "echo alive").stdout == b"alive\n"


def test_secrets_are_never_on_any_command_line(session: HostSession) -> None:
    secret = f"s3cret-{random.randrange(10**9)}"
    marker = unique_sleep()
    request = SessionRequest(
        f'echo "{secret}" >/dev/null; PW="$PASSWORD" sleep {marker}',
        env={"PASSWORD": f"env-{secret}"},
    )
    thread, box = in_thread(lambda: session.run(request))
    assert wait_until(lambda: pgrep(marker))
    leaks = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if secret.encode() in Path(path).read_bytes():
                leaks.append(path)
        except OSError:
            continue  # the process ended meanwhile
    session.kill(request.id)
    thread.join(NO_HANG)
    assert leaks == []


# -- the controller goes away -------------------------------------------------------------

_CONTROLLER = """
import os, sys, threading
from runbook.run.ssh.session import SessionRequest, local_session
marker = os.environ["MARKER"]
session = local_session()
session.run(SessionRequest("sleep " + marker + "9 >/dev/null 2>&1 &", drain=0.1))
for _ in range(3):
    threading.Thread(target=session.run, args=(SessionRequest("sleep " + marker),)).start()
print(session.pid, flush=True)
threading.Event().wait()
"""


def test_a_killed_controller_takes_its_running_commands_along() -> None:
    """kill -9 of the controller: the executor sees its stdin close and kills every
    running group; what a finished command left running is not touched."""
    marker = unique_sleep()
    env = {**os.environ, "MARKER": marker, "PYTHONPATH": str(REPO)}
    controller = subprocess.Popen(
        [sys.executable, "-c", _CONTROLLER], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert controller.stdout is not None
        executor = int(controller.stdout.readline())
        assert wait_until(lambda: len(pgrep(f"sleep {marker}$")) == 3)
        controller.kill()
        controller.wait()
        assert wait_until(lambda: not pgrep(f"sleep {marker}$"), 5.0)
        assert pgrep(f"sleep {marker}9"), "a finished command's background child was killed"
        assert wait_until(lambda: not Path(f"/proc/{executor}").exists(), 5.0)
    finally:
        controller.kill()
        kill_leftovers(marker)


def test_closing_the_stream_kills_running_commands_and_fails_their_runs(
    session: HostSession,
) -> None:
    marker = unique_sleep()
    thread, box = in_thread(lambda: run(session, f"sleep {marker}"))
    assert wait_until(lambda: pgrep(marker))
    session.stream.close_input()  # what the executor sees when the controller dies
    thread.join(NO_HANG)
    assert isinstance(box.get("error"), SessionLost)
    assert box["error"].may_have_run  # type: ignore[attr-defined]
    assert wait_until(lambda: not pgrep(marker), 5.0)
    with pytest.raises(SessionLost) as lost:
        run(session, "true")
    assert not lost.value.may_have_run


def test_without_heartbeats_the_executor_kills_its_commands(
    sessions: Callable[..., HostSession],
) -> None:
    """A frozen network: the stream stays open but nothing arrives for the timeout."""
    session = sessions(heartbeat_timeout=2.0, heartbeat=3600.0)
    marker = unique_sleep()
    thread, box = in_thread(lambda: run(session, f"sleep {marker}"))
    assert wait_until(lambda: pgrep(marker))
    assert wait_until(lambda: not pgrep(marker), 2.0 + 5.0)
    thread.join(NO_HANG)
    assert isinstance(box.get("error"), SessionLost)


def test_heartbeats_keep_a_quiet_command_alive(sessions: Callable[..., HostSession]) -> None:
    session = sessions(heartbeat_timeout=1.0, heartbeat=0.2)
    result = run(session, "sleep 2.5; echo done")
    assert (result.rc, result.stdout) == (0, b"done\n")


def test_a_killed_executor_fails_the_waiting_runs(session: HostSession) -> None:
    marker = unique_sleep()
    thread, box = in_thread(lambda: run(session, f"sleep {marker}"))
    assert wait_until(lambda: pgrep(marker))
    assert session.pid is not None
    os.kill(session.pid, signal.SIGKILL)
    thread.join(NO_HANG)
    kill_leftovers(marker)  # nothing was left to kill them
    assert isinstance(box.get("error"), SessionLost)


# -- starting -----------------------------------------------------------------------------


def test_no_python3_is_session_unavailable() -> None:
    with pytest.raises(SessionUnavailable, match="python3"):
        local_session(python="python3", env={"PATH": "/nonexistent"})


def _old_pythons() -> list[str]:
    found = glob.glob(os.path.expanduser("~/.pyenv/versions/3.[67].*/bin/python3.[67]"))
    found += [p for p in ("/usr/bin/python3.6", "/usr/bin/python3.7") if os.path.exists(p)]
    return sorted(found)[:1]


@pytest.mark.skipif(not _old_pythons(), reason="no Python 3.6/3.7 on this machine")
def test_the_executor_runs_on_python_3_6(sessions: Callable[..., HostSession]) -> None:
    """Old hosts: no memfd_create and no posix_spawn (the fork path), no walrus."""
    session = sessions(python=_old_pythons()[0])
    result = run(session, 'echo "$V"; cat; exit 4', env={"V": "café $x"})
    assert (result.rc, result.stdout) == (4, "café $x\n".encode())
    marker = unique_sleep()
    result = run(session, f"sleep {marker}", timeout=0.3, kill_grace=0.3)
    assert result.timed_out and result.rc == -15
    assert wait_until(lambda: not pgrep(marker), 5.0)


def test_the_executor_runs_under_sudo_as_another_user(
    sessions: Callable[..., HostSession],
) -> None:
    if os.geteuid() != 0 or subprocess.run(["sudo", "-n", "-u", "nobody", "true"]).returncode:
        pytest.skip("needs root and sudo")
    session = sessions(python="/usr/bin/python3", become_user="nobody")
    assert run(session, "id -un").stdout == b"nobody\n"
    marker = unique_sleep()
    thread, box = in_thread(lambda: run(session, f"sleep {marker}"))
    assert wait_until(lambda: pgrep(marker))
    session.stream.close_input()
    thread.join(NO_HANG)
    assert isinstance(box.get("error"), SessionLost)
    assert wait_until(lambda: not pgrep(marker), 5.0)


# -- over real sshd -----------------------------------------------------------------------


def _client(fleet: object, name: str) -> object:
    import paramiko

    h = fleet[name]  # type: ignore[index]
    client = paramiko.SSHClient()
    client.load_host_keys(str(fleet.known_hosts))  # type: ignore[attr-defined]
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        h.port,
        username="root",
        key_filename=str(fleet.client_key),  # type: ignore[attr-defined]
        allow_agent=False,
        look_for_keys=False,
        timeout=NO_HANG,
    )
    return client


@pytest.mark.ssh
def test_over_ssh_commands_run_concurrently_with_exact_output(fleet: object) -> None:
    client = _client(fleet, "h1")
    try:
        session = open_channel_session(client.get_transport(), name="h1")  # type: ignore[attr-defined]
        results: dict[int, SessionResult] = {}

        def one(i: int) -> None:
            results[i] = run(session, f'echo "$V-{i}"; head -c 300000 /dev/zero', env={"V": "a b"})

        threads = [in_thread(lambda i=i: one(i)) for i in range(8)]
        for thread, box in threads:
            thread.join(NO_HANG)
            assert "error" not in box, box.get("error")
        for i, result in results.items():
            assert result.stdout == f"a b-{i}\n".encode() + bytes(300000)
        marker = unique_sleep()
        result = run(session, f"sleep {marker}", timeout=0.5, kill_grace=0.5)
        assert result.timed_out and result.rc == -15
        assert wait_until(lambda: not pgrep(marker), 5.0)
        session.close()
    finally:
        client.close()  # type: ignore[attr-defined]


@pytest.mark.ssh
def test_over_ssh_no_python3_is_session_unavailable(fleet: object) -> None:
    client = _client(fleet, "h2")
    try:
        channel = client.get_transport().open_session()  # type: ignore[attr-defined]
        channel.exec_command("PATH=/nonexistent; " + bootstrap_command())
        with pytest.raises(SessionUnavailable, match="python3"):
            HostSession(ChannelStream(channel), name="h2").start(NO_HANG)
    finally:
        client.close()  # type: ignore[attr-defined]


_SSH_CONTROLLER = """
import os, sys, threading, paramiko
from runbook.run.ssh.session import SessionRequest, open_channel_session
client = paramiko.SSHClient()
client.load_host_keys(sys.argv[1])
client.connect("127.0.0.1", int(sys.argv[2]), username="root", key_filename=sys.argv[3],
               allow_agent=False, look_for_keys=False)
session = open_channel_session(client.get_transport())
for _ in range(3):
    request = SessionRequest("sleep " + os.environ["MARKER"])
    threading.Thread(target=session.run, args=(request,)).start()
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.mark.ssh
def test_over_ssh_a_killed_controller_takes_its_remote_commands_along(fleet: object) -> None:
    """sshd closes the executor's stdin when the connection drops (it sends no signal to a
    session without a pty), and the executor kills what is still running."""
    marker = unique_sleep()
    argv = [
        sys.executable,
        "-c",
        _SSH_CONTROLLER,
        str(fleet.known_hosts),  # type: ignore[attr-defined]
        str(fleet["h3"].port),  # type: ignore[index]
        str(fleet.client_key),  # type: ignore[attr-defined]
    ]
    env = {**os.environ, "MARKER": marker, "PYTHONPATH": str(REPO)}
    controller = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert controller.stdout is not None
        assert controller.stdout.readline() == "ready\n"
        assert wait_until(lambda: len(pgrep(f"sleep {marker}")) == 3)
        controller.kill()
        controller.wait()
        assert wait_until(lambda: not pgrep(f"sleep {marker}"), 5.0)
    finally:
        controller.kill()
        kill_leftovers(marker)


def test_a_host_with_other_bytecode_gets_the_source(
    sessions: Callable[..., HostSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same interpreter gets a marshalled code object; any other gets the source."""
    from runbook.run.ssh import session as module

    assert module.executor_payload(module._LOCAL_MAGIC).startswith(b"M ")
    monkeypatch.setattr(module, "_LOCAL_MAGIC", b"\0\0\r\n")
    assert module.executor_payload(b"\x0d\x0d\r\n").startswith(b"S ")
    assert run(sessions(), "echo from source").stdout == b"from source\n"


def test_without_memfd_the_script_is_an_unlinked_private_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python < 3.8 has no memfd_create; without O_TMPFILE either, a 0600 file is created
    and unlinked at once: the script is on no path while the command runs."""
    from runbook.remote import executor

    monkeypatch.delattr(executor.posix, "memfd_create", raising=False)
    monkeypatch.delattr(executor.posix, "O_TMPFILE", raising=False)
    fd = executor._script_fd(b"echo secret")
    try:
        info = os.fstat(fd)
        assert (info.st_nlink, info.st_mode & 0o777) == (0, 0o600)
        assert os.read(fd, 100) == b"echo secret"
    finally:
        os.close(fd)


# -- an executor that is stopped, silent or lying (issue 24) -------------------------------


def _stop_executor(session: HostSession) -> None:
    assert session.pid is not None
    os.kill(session.pid, signal.SIGSTOP)


def test_a_stopped_executor_fails_the_run_by_its_deadline(
    sessions: Callable[..., HostSession],
) -> None:
    """``kill -STOP $PPID`` from the command: no exit frame ever comes. The controller
    gives up at timeout + kill grace + drain + RESULT_GRACE, not never."""
    session = sessions()
    marker = unique_sleep()
    request = SessionRequest(
        f"kill -STOP $PPID; sleep {marker}", timeout=0.5, kill_grace=0.2, drain=0.2
    )
    thread, box = in_thread(lambda: session.run(request))
    try:
        thread.join(NO_HANG)
        assert not thread.is_alive(), "the run hung on a stopped executor"
        error = box.get("error")
        assert isinstance(error, SessionLost) and error.may_have_run, box
        assert "deadline" in str(error) and session.broken is not None
    finally:
        kill_leftovers(marker)
        if session.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(session.pid, signal.SIGKILL)


def test_a_silent_executor_is_given_up_without_any_deadline(
    sessions: Callable[..., HostSession],
) -> None:
    """No timeout at all: the executor's own heartbeats stop, the session ends."""
    session = sessions(heartbeat_timeout=1.5, heartbeat=0.2)  # silence: 1.5 s too
    marker = unique_sleep()
    thread, box = in_thread(lambda: session.run(SessionRequest(f"sleep {marker}")))
    try:
        assert wait_until(lambda: pgrep(marker))
        time.sleep(2.0)  # quiet, but alive: its heartbeats keep the session
        assert thread.is_alive()
        _stop_executor(session)
        thread.join(NO_HANG)
        assert isinstance(box.get("error"), SessionLost), box
        assert "sent nothing" in str(box["error"])
    finally:
        kill_leftovers(marker)


def test_a_kill_of_a_stopped_executors_command_ends_within_the_grace(
    sessions: Callable[..., HostSession],
) -> None:
    """The second Ctrl-C on a stopped executor: bounded by the kill grace, not the
    command's (long) timeout."""
    session = sessions()
    marker = unique_sleep()
    request = SessionRequest(f"sleep {marker}", timeout=3600, kill_grace=0.2, drain=0.2)
    thread, box = in_thread(lambda: session.run(request))
    try:
        assert wait_until(lambda: pgrep(marker))
        _stop_executor(session)
        session.kill(request.id, grace=0.2)
        thread.join(NO_HANG)
        assert not thread.is_alive() and isinstance(box.get("error"), SessionLost), box
    finally:
        kill_leftovers(marker)


def test_heartbeats_go_on_while_on_output_is_stuck(sessions: Callable[..., HostSession]) -> None:
    """A console stalled behind a full pipe blocks ``on_output`` on the reader thread:
    heartbeats come from their own thread, so the executor keeps the command alive."""
    session = sessions(heartbeat_timeout=1.0, heartbeat=0.2)

    def stuck(name: str, chunk: bytes) -> None:
        time.sleep(3.0)  # three heartbeat timeouts

    result = session.run(SessionRequest("echo first; sleep 2; echo done"), stuck)
    assert (result.rc, result.stdout) == (0, b"first\ndone\n")


_FORGE = (
    'python3 -c \'import os, struct, sys; fd = os.open("/proc/%s/fd/%s" % (sys.argv[1], '
    'sys.argv[2]), os.O_WRONLY); os.write(fd, bytes.fromhex(sys.argv[3]))\' "$PPID" {fd} {hex}'
)


@pytest.mark.parametrize(
    ("what", "fd", "frame"),
    [
        # An exit frame saying rc 0 for this request id, in the old 9-byte header.
        ("an ok exit", 1, struct.pack(">IBI", 17, 0x58, 0) + struct.pack(">iBdI", 0, 0, 0, 0)),
        ("a 4 GB length", 1, struct.pack(">IBI", 0xFFFFFFF0, 0x4F, 0)),
        ("garbage requests", 0, b"\xff" * 64),
    ],
)
def test_frames_a_command_forges_end_the_session(
    session: HostSession, what: str, fd: int, frame: bytes
) -> None:
    """A command can write into the executor's stdout or stdin through /proc; it cannot
    know the session's tag: the forgery ends the session, never a result."""
    request = SessionRequest(_FORGE.format(fd=fd, hex=frame.hex()) + "; exit 3", timeout=20)
    thread, box = in_thread(lambda: session.run(request))
    thread.join(NO_HANG)
    assert not thread.is_alive(), f"{what}: the run hung"
    assert isinstance(box.get("error"), SessionLost), (what, box)
    assert "result" not in box


def test_a_malformed_hello_is_a_broken_session(tmp_path: Path) -> None:
    """A "python3" that answers the bootstrap, then a hello no executor of ours sends."""
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/bin/sh\nprintf 'RUNBOOK-BOOT 0d0d0a0a\\n'\nprintf 'RUNBOOK-EXECUTOR 2 x\\n'\n"
        "exec sleep 30\n"
    )
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(SessionBroken, match="not a protocol 2 hello"):
        local_session(python=str(fake))
    assert time.monotonic() - started < NO_HANG
