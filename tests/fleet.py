"""A fleet of real OpenSSH servers on 127.0.0.1, for the SSH tests and the benchmarks.

Each host is its own ``sshd -D`` with its own ed25519 host key, on a free port, logging at
VERBOSE to its own file (``connections()`` counts accepted logins there). All hosts accept
one generated client key. The fleet writes a ``known_hosts`` (``[127.0.0.1]:PORT``
entries) and an ``ssh_config`` (``Host h1`` ... ``hN``) so runbooks can name hosts.
Everything lives in one temporary directory, never in the repository, and sessions get
``HOME`` set to an empty directory there so no shell start-up file is read.

    with Fleet(5) as fleet:
        ctx = SshExecutionContext(fleet.ssh_options())
        ctx.execute(Command("s", fleet.host("h1"), "hostname"))

Must run as root (sshd changes user, and the tests log in as root). Processes are
started from the calling thread; ``stop()`` (also run at exit) ends only the processes
this fleet started and everything they forked.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from runbook.model.runbook import Host
    from runbook.run.ssh.context import SshOptions

SSHD = "/usr/sbin/sshd"
ADDRESS = "127.0.0.1"
_LISTENING = "Server listening on {addr} port {port}."
_ACCEPTED = re.compile(r"^.*Accepted publickey for ", re.MULTILINE)


def sshd_available() -> bool:
    return os.access(SSHD, os.X_OK)


def generate_key(path: Path) -> str:
    """Write an ed25519 private key (OpenSSH format, 0600) and return its public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path.with_name(path.name + ".pub").write_bytes(public + b"\n")
    return public.decode()


def _free_ports(n: int) -> list[int]:
    """Ports the kernel hands out; all held open together so they are distinct."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((ADDRESS, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _openssh_version() -> tuple[int, int]:
    out = subprocess.run([SSHD, "-V"], capture_output=True, text=True).stderr
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else (0, 0)


@dataclass
class FleetHost:
    """One sshd of the fleet."""

    name: str
    port: int
    dir: Path
    public_key: str  # the host key, "ssh-ed25519 AAAA..."
    max_startups: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def known_hosts_name(self) -> str:
        return f"[{ADDRESS}]:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"{self.known_hosts_name} {self.public_key}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def connections(self) -> int:
        """Logins accepted so far (probes that never authenticate are not counted)."""
        return len(_ACCEPTED.findall(self.log_text()))

    def processes(self) -> list[psutil.Process]:
        """The listener and everything it forked: sessions and the commands they run."""
        if not self.running:
            return []
        try:
            root = psutil.Process(self.proc.pid)  # type: ignore[union-attr]
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


class Fleet:
    """``size`` sshd servers named ``{prefix}1`` .. ``{prefix}N``.

    ``max_startups`` (sshd's MaxStartups, e.g. ``"1:100:1"``) is one value for every host
    or a mapping name → value; ``sshd_options`` are extra sshd_config lines for all hosts;
    ``sshd_prefix`` a command each sshd is started through (``setpriv`` dropping a
    capability, say), which must exec it.
    """

    def __init__(
        self,
        size: int = 5,
        root: str | Path | None = None,
        *,
        prefix: str = "h",
        max_startups: str | Mapping[str, str] | None = None,
        sshd_options: Mapping[str, str] | None = None,
        sshd_prefix: Sequence[str] = (),
    ) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="runbook-fleet-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = self.root / "home"
        self.client_key = self.root / "id_ed25519"
        self.authorized_keys = self.root / "authorized_keys"
        self.known_hosts = self.root / "known_hosts"
        self.ssh_config = self.root / "ssh_config"
        self.sshd_options = dict(sshd_options or {})
        self.sshd_prefix = list(sshd_prefix)
        names = [f"{prefix}{i}" for i in range(1, size + 1)]
        if isinstance(max_startups, Mapping):
            startups = dict(max_startups)
        else:
            startups = dict.fromkeys(names, max_startups)
        self.hosts: dict[str, FleetHost] = {}
        for name, port in zip(names, _free_ports(size), strict=True):
            directory = self.root / name
            directory.mkdir(exist_ok=True)
            self.hosts[name] = FleetHost(name, port, directory, "", startups.get(name))
        self._penalties = _openssh_version() >= (9, 8)
        self._started = False
        atexit.register(_stop_at_exit, weakref.ref(self))

    # -- access ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> FleetHost:
        return self.hosts[name]

    def __iter__(self) -> Iterator[FleetHost]:
        return iter(self.hosts.values())

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    def host(self, name: str, **fields: Any) -> Host:
        """A runbook ``Host`` for ``name``, resolved through ``ssh_config``."""
        from runbook.model.runbook import Host

        if name not in self.hosts:
            raise KeyError(name)
        return Host(name=name, **fields)

    def ssh_options(self, **overrides: Any) -> SshOptions:
        """SshOptions pointing at this fleet's ssh_config (which names its known_hosts)."""
        from runbook.run.ssh.context import SshOptions

        return SshOptions(**{"ssh_config": str(self.ssh_config), **overrides})

    # -- files ----------------------------------------------------------------------------

    def ssh_config_text(self, jumps: Mapping[str, str] | None = None) -> str:
        """``Host`` blocks for every host; ``jumps`` maps a host to its ProxyJump value."""
        blocks = []
        for h in self:
            lines = [
                f"Host {h.name}",
                f"    HostName {ADDRESS}",
                f"    Port {h.port}",
                "    User root",
                f"    IdentityFile {self.client_key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {self.known_hosts}",
                "    StrictHostKeyChecking yes",
            ]
            if jumps and h.name in jumps:
                lines.append(f"    ProxyJump {jumps[h.name]}")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    def write_ssh_config(self, path: str | Path, jumps: Mapping[str, str] | None = None) -> Path:
        path = Path(path)
        path.write_text(self.ssh_config_text(jumps))
        return path

    def known_hosts_text(self) -> str:
        return "".join(f"{h.known_hosts_line}\n" for h in self)

    def _sshd_config(self, h: FleetHost) -> str:
        options = {
            "ListenAddress": ADDRESS,
            "Port": str(h.port),
            "HostKey": str(h.host_key),
            "PidFile": "none",
            "AuthorizedKeysFile": str(self.authorized_keys),
            "StrictModes": "no",
            "UsePAM": "no",
            "PermitRootLogin": "prohibit-password",
            "PubkeyAuthentication": "yes",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "LogLevel": "VERBOSE",
            "SetEnv": f"HOME={self.home}",
            "MaxSessions": "100",
            "UseDNS": "no",
            "PrintMotd": "no",
            "PrintLastLog": "no",
            "AllowTcpForwarding": "yes",
            "Subsystem": "sftp internal-sftp",  # copy/fetch and scp need SFTP
        }
        if h.max_startups:
            options["MaxStartups"] = h.max_startups
        if self._penalties:  # OpenSSH >= 9.8 would throttle a test that reconnects a lot
            options["PerSourcePenalties"] = "no"
        options.update(self.sshd_options)
        return "".join(f"{k} {v}\n" for k, v in options.items())

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Fleet:
        """Generate keys and configs, start every sshd, wait until all listen. Idempotent:
        a second call (e.g. ``start()`` inside ``with Fleet()``) must not leak a second set."""
        if self._started:
            return self
        if not sshd_available():
            raise RuntimeError(f"{SSHD} is not installed")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        self.home.mkdir(exist_ok=True)
        client_public = generate_key(self.client_key)
        self.authorized_keys.write_text(client_public + "\n")
        for h in self:
            h.public_key = generate_key(h.host_key)
        self.known_hosts.write_text(self.known_hosts_text())
        self.ssh_config.write_text(self.ssh_config_text())
        self._started = True
        self._launch(list(self.hosts), timeout)
        return self

    def _launch(self, names: list[str], timeout: float) -> None:
        """Start sshds and wait for them to listen; a host whose port was taken meanwhile
        moves to another port (its known_hosts and ssh_config entries follow)."""
        pending: dict[str, int] = {}
        for attempt in range(3):
            for name in names:
                h = self.hosts[name]
                h.config.write_text(self._sshd_config(h))
                pending[name] = h.log.stat().st_size if h.log.exists() else 0
                h.proc = subprocess.Popen(
                    [*self.sshd_prefix, SSHD, "-D", "-f", str(h.config), "-E", str(h.log)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C at the terminal must not reach them
                )
            retry = self._wait_listening(pending, timeout)
            if not retry:
                return
            if attempt == 2:
                break
            for name, port in zip(retry, _free_ports(len(retry)), strict=True):
                self.hosts[name].port = port
            self.known_hosts.write_text(self.known_hosts_text())
            self.ssh_config.write_text(self.ssh_config_text())
            names, pending = retry, {}
        raise RuntimeError(f"sshd could not bind a port for {', '.join(names)}")

    def _wait_listening(self, pending: dict[str, int], timeout: float) -> list[str]:
        """Watch the logs (not probe connections, which sshd would log and count)."""
        deadline = time.monotonic() + timeout
        port_taken = []
        while pending:
            for name, offset in list(pending.items()):
                h = self.hosts[name]
                text = ""
                with contextlib.suppress(FileNotFoundError), open(h.log, "rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
                if _LISTENING.format(addr=ADDRESS, port=h.port) in text:
                    del pending[name]
                elif h.proc is not None and h.proc.poll() is not None:
                    del pending[name]
                    if "Address already in use" in text:
                        port_taken.append(name)
                    else:
                        raise RuntimeError(f"sshd for {name} exited:\n{text[-2000:]}")
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"sshd not listening after {timeout}s: {', '.join(pending)}")
            if pending:
                time.sleep(0.02)
        return port_taken

    def wait_listening(self, name: str, timeout: float = 10.0) -> None:
        """Block until ``name`` accepts TCP connections (this probe is logged by sshd)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((ADDRESS, self.hosts[name].port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _signal(self, name: str, sig: int) -> list[psutil.Process]:
        procs = self.hosts[name].processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        return procs

    def kill(self, name: str) -> None:
        """SIGKILL the host's sshd and everything it forked: the host "crashes"."""
        self._kill([self.hosts[name]])

    def _kill(self, hosts: list[FleetHost]) -> None:
        """Stop every process of ``hosts`` until no new one appears (so nothing forked
        meanwhile, or re-parented to init on the way, escapes), then SIGKILL them all."""
        roots = [h.proc.pid for h in hosts if h.running]  # type: ignore[union-attr]
        stopped: set[psutil.Process] = set()
        for _ in range(10):
            new = _descendants(roots) - stopped
            if not new:
                break
            for p in new:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGSTOP)
            stopped |= new
        for p in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        for h in hosts:
            if h.proc is not None:
                h.proc.wait()
        _wait_gone(stopped)

    def freeze(self, name: str) -> None:
        """SIGSTOP the host's processes: connections stay open but nothing answers."""
        self._signal(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self._signal(name, signal.SIGCONT)

    def restart(self, name: str, timeout: float = 10.0) -> None:
        """Kill the host, start it again on the same port with the same host key."""
        self.kill(name)
        self._launch([name], timeout)

    def stop(self) -> None:
        """End every process this fleet started (and their children); safe to call twice."""
        self._kill(list(self))
        for h in self:
            h.proc = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Fleet:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _descendants(roots: list[int]) -> set[psutil.Process]:
    """``roots`` and all their descendants, from one scan of the process table."""
    children: dict[int, list[int]] = {}
    for p in psutil.process_iter(["ppid"]):
        children.setdefault(p.info["ppid"], []).append(p.pid)
    found: set[psutil.Process] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        with contextlib.suppress(psutil.NoSuchProcess):
            found.add(psutil.Process(pid))
            todo.extend(children.get(pid, ()))
    return found


def _wait_gone(procs: set[psutil.Process], timeout: float = 5.0) -> None:
    """Until each process is gone or a zombie (init may be slow to reap orphans)."""
    deadline = time.monotonic() + timeout
    for p in procs:
        while time.monotonic() < deadline:
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)


def _stop_at_exit(ref: weakref.ref[Fleet]) -> None:
    fleet = ref()
    if fleet is not None:
        fleet.stop()
