"""The failure-path playbooks (issue 21), byte for byte, against real sshd hosts.

Each fleet host stands in for a machine; fakes stand in for the software and log what
they do, with a timestamp, so the tests judge the procedure from the services' side:

- ``rolling-patch.yml``: ``tests/data/fakelb`` (the load balancer's CLI, on the
  controller), ``tests/data/fakeos`` (the upgrade, on the hosts); a reboot kills the
  host's sshd and sessions, keeps it down, changes its boot id and starts it again, and
  its web port answers again a moment later (``Machines``).
- ``config-rollout.yml``: ``tests/data/fakeshop`` (a service that refuses a bad config).
- ``es-rolling-restart.yml``: ``tests/data/fakees`` (the node service, on the hosts) and
  ``EsApi`` (the cluster's HTTP API, which the playbook's curl commands call).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.helpers import events, runbook, start, wait_for
from tests.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
DOWN_FOR = 1.0  # seconds a rebooting host has nothing listening

pytestmark = pytest.mark.ssh


# The controller in the inventory, so that local and delegated steps see [all:vars] (the
# implicit localhost does not, yet).
CONTROLLER = "[controller]\nlocalhost ansible_connection=local\n\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host_line(name: str, fh, fleet: Fleet, **vars: object) -> str:
    extra = " ".join(f"{k}={json.dumps(str(v)) if ' ' in str(v) else v}" for k, v in vars.items())
    return (
        f"{name} ansible_host=127.0.0.1 ansible_port={fh.port} ansible_user=root "
        f"ansible_ssh_private_key_file={fleet.client_key} {extra}"
    )


def _playbook(tmp: Path, name: str) -> Path:
    (tmp / "inventory").mkdir()
    shutil.copy(ROOT / "playbooks" / name, tmp / name)
    return tmp / name


def _apply(tmp: Path, playbook: Path, fleet: Fleet):
    (tmp / "known_hosts").write_text(fleet.known_hosts_text())
    return runbook(
        "apply", "--yes", "--output", "json", "--known-hosts", str(tmp / "known_hosts"),
        str(playbook), cwd=tmp, timeout=300,
    )  # fmt: skip


def _results(stdout: str) -> dict[tuple[str, str], dict]:
    """The last result of each (step, host): a rescued one replaces its failure."""
    out = {}
    for e in events(stdout):
        if e["event"] == "command_finished":
            out[(e["step"], e["host"])] = e
    return out


def _log(path: Path) -> list[tuple[str, str, float]]:
    """``ACTION NAME TIME`` lines, in time order."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return sorted(((a, n, float(t)) for a, n, t in rows), key=lambda r: r[2])


# -- machines that reboot and serve ---------------------------------------------------------


class _Port:
    """A TCP port that accepts connections (a web server), until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock: socket.socket | None = None

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self._sock = sock
        threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sock.accept()
                conn.close()

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None


class Machines:
    """Fleet hosts that reboot when asked: a ``reboot-requested`` file in a host's state
    directory kills its sshd and sessions and stops its web port; after ``DOWN_FOR`` s its
    boot id changes and sshd starts again, then (half a second later) the web port."""

    def __init__(self, fleet: Fleet, states: dict[str, Path], ports: dict[str, int]) -> None:
        self.fleet, self.states = fleet, states
        self.ports = {name: _Port(p) for name, p in ports.items()}
        self.reboots: dict[str, int] = dict.fromkeys(states, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for name, state in states.items():
            (state / "boot_id").write_text("boot-0\n")
            self.ports[name].start()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for name, state in self.states.items():
                request = state / "reboot-requested"
                if request.exists():
                    request.unlink()
                    threading.Thread(target=self._reboot, args=(name,), daemon=True).start()

    def _reboot(self, name: str) -> None:
        with self._lock:
            self.fleet.kill(name)
        self.ports[name].stop()
        time.sleep(DOWN_FOR)
        self.reboots[name] += 1
        (self.states[name] / "boot_id").write_text(f"boot-{self.reboots[name]}\n")
        with self._lock:
            self.fleet.restart(name)
        time.sleep(0.5)
        self.ports[name].start()

    def close(self) -> None:
        self._stop.set()
        self._watcher.join(5)
        for port in self.ports.values():
            port.stop()


# -- rolling-patch.yml ------------------------------------------------------------------------


@pytest.fixture
def webfarm(tmp_path: Path, fleet_factory) -> Iterator[tuple[Path, Path, Machines]]:
    fleet = fleet_factory(8, prefix="web0")
    playbook = _playbook(tmp_path, "rolling-patch.yml")
    shutil.copytree(DATA / "fakelb", tmp_path / "lb")
    shutil.copytree(DATA / "fakeos", tmp_path / "os")
    hosts = tmp_path / "hosts"
    states, ports, lines = {}, {}, []
    for fh in fleet:
        state = hosts / fh.name
        state.mkdir(parents=True)
        (tmp_path / "lb" / "state" / "pool").mkdir(parents=True, exist_ok=True)
        (tmp_path / "lb" / "state" / "pool" / fh.name).touch()
        states[fh.name], ports[fh.name] = state, _free_port()
        lines.append(
            _host_line(
                fh.name,
                fh,
                fleet,
                patch_log=state / "patch.log",
                reboot_command=f"touch {state / 'reboot-requested'}",
                boot_id_check=f"cat {state / 'boot_id'}",
                http_port=ports[fh.name],
            )  # fmt: skip
        )
    (tmp_path / "inventory" / "webfarm.ini").write_text(
        "[web]\n" + "\n".join(lines) + f"\n\n{CONTROLLER}[all:vars]\n"
        f"lbctl={tmp_path / 'lb' / 'bin' / 'lbctl'}\n"
        f"patch_command={tmp_path / 'os' / 'bin' / 'os-patch'}\n"
    )
    machines = Machines(fleet, states, ports)
    yield playbook, tmp_path, machines
    machines.close()


def _pool_history(tmp: Path) -> list[tuple[str, str, float]]:
    """The load balancer's log and the hosts' patch events, in time order."""
    lb = _log(tmp / "lb" / "state" / "lb.log")
    return sorted(lb + _log(tmp / "hosts" / "events.log"), key=lambda r: r[2])


def test_rolling_patch_never_patches_a_host_in_the_pool_and_keeps_a_failed_one_out(
    webfarm,
) -> None:
    playbook, tmp, machines = webfarm
    (tmp / "hosts" / "web03" / "broken").touch()  # its upgrade fails
    done = _apply(tmp, playbook, machines.fleet)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    results = _results(done.stdout)
    names = [f"web0{i}" for i in range(1, 9)]

    # From the load balancer's side: every patch happened while the host was out of the
    # pool, and the host that failed was never put back.
    pool = set(names)
    for action, host, _ in _pool_history(tmp):
        if action == "drain":
            pool.discard(host)
        elif action == "add":
            pool.add(host)
        elif action == "patch":
            assert host not in pool, f"{host} patched while in the pool"
    assert pool == set(names) - {"web03"}
    lb = [(a, h) for a, h, _ in _log(tmp / "lb" / "state" / "lb.log")]
    assert ("add", "web03") not in lb and ("note", "web03") in lb
    assert (tmp / "lb" / "state" / "note.web03").read_text() == "patch failed at: Patch\n"

    # 25 % batches, drained on the controller once per host, re-added with their batch.
    batches = [e for e in events(done.stdout) if e["event"] == "batch_started"]
    assert [b["hosts"] for b in batches] == [names[i : i + 2] for i in range(0, 8, 2)]
    assert results[("Back in the pool", "web04")]["stdout"] == "added web04 --batch 2/4\n"

    # web03 was rescued (noted, kept drained), not counted; the rollout went on.
    assert results[("Patch", "web03")]["status"] == "rescued"
    assert results[("Back in the pool", "web03")]["status"] == "cancelled"
    assert results[("Keep it drained and say why", "web03")]["status"] == "ok"
    # Every other host rebooted once (a new boot id, a new session) and passed the gate.
    for name in names:
        if name == "web03":
            assert machines.reboots[name] == 0
            continue
        assert machines.reboots[name] == 1
        assert results[("Reboot", name)]["stdout"] == "check before: boot-0\ncheck after: boot-1\n"
        assert results[("Health gate", name)]["status"] == "ok"
    # The always step collected every host's patch log, the failed one's too.
    assert "dpkg was interrupted" in (tmp / "logs" / "web03-patch.log").read_text()
    assert all((tmp / "logs" / f"{n}-patch.log").exists() for n in names)


# -- config-rollout.yml ---------------------------------------------------------------------


OLD_CONF = "# shop.conf, as it was\nlisten = {name}:8080\nworkers = 4\n"


def _shop_env(conf: Path) -> dict[str, str]:
    return {"SHOP_CONF": str(conf)}


@pytest.fixture
def shop(tmp_path: Path, fleet_factory) -> tuple[Path, Path, Fleet]:
    fleet = fleet_factory(3, prefix="shop")
    playbook = _playbook(tmp_path, "config-rollout.yml")
    shutil.copytree(ROOT / "playbooks" / "files", tmp_path / "files")
    shutil.copytree(DATA / "fakeshop", tmp_path / "shop")
    shopctl = tmp_path / "shop" / "bin" / "shopctl"
    ports = {"shop1": 8080, "shop2": 99999, "shop3": 8081}  # shop2's is wrong
    lines = []
    for fh in fleet:
        state = tmp_path / "hosts" / fh.name
        state.mkdir(parents=True)
        conf = state / "shop.conf"
        if fh.name == "shop3":  # already has the new config: nothing to restart
            conf.write_text(
                "# shop.conf for shop3, rendered by config-rollout.yml\n"
                "listen = shop3:8081\nworkers = 8\n"
            )
        else:
            conf.write_text(OLD_CONF.format(name=fh.name))
        conf.chmod(0o644)
        # The service runs the config the host has.
        (state / "running").write_text(hashlib.sha256(conf.read_bytes()).hexdigest() + "\n")
        lines.append(_host_line(fh.name, fh, fleet, shop_conf=conf, shop_port=ports[fh.name]))
    (tmp_path / "inventory" / "shop.ini").write_text(
        "[shop]\n" + "\n".join(lines) + "\n\n[shop:vars]\n"
        f'restart_command="{shopctl} restart"\nstatus_command="{shopctl} status"\n'
    )
    return playbook, tmp_path, fleet


def test_config_rollout_restarts_only_changed_hosts_and_restores_a_bad_config(shop) -> None:
    playbook, tmp, fleet = shop
    hosts = tmp / "hosts"
    before = {n: (hosts / n / "shop.conf").read_bytes() for n in ("shop1", "shop2", "shop3")}
    done = _apply(tmp, playbook, fleet)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    results = _results(done.stdout)

    def running(name: str) -> str:
        return (hosts / name / "running").read_text().strip()

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    # shop1: the new config, and the service restarted on it.
    new1 = (hosts / "shop1" / "shop.conf").read_text()
    assert new1.splitlines() == [
        "# shop.conf for shop1, rendered by config-rollout.yml",
        "listen = shop1:8080",
        "workers = 8",
    ]
    assert running("shop1") == sha(new1.encode())
    # shop2: the new config made the service refuse to start; the rescue put the kept
    # file back, byte for byte, and the service runs it again.
    assert results[("Restart if it changed", "shop2")]["status"] == "rescued"
    assert "port '99999' out of range" in results[("Restart if it changed", "shop2")]["stderr"]
    assert (hosts / "shop2" / "shop.conf").read_bytes() == before["shop2"]
    assert running("shop2") == sha(before["shop2"])
    assert results[("Check the service", "shop2")]["status"] == "cancelled"
    # shop3 already had it: unchanged, so not restarted (the service's log says so).
    assert results[("Render the config", "shop3")]["changed"] is False
    assert results[("Restart if it changed", "shop3")]["status"] == "skipped"
    restarts = [(a, h) for a, h, _ in _log(hosts / "events.log")]
    assert restarts == [("restart", "shop1"), ("restart", "shop2"), ("restart", "shop2")]
    # The rescue ran where it was needed only; the kept copies are gone everywhere.
    assert results[("Put the previous config back", "shop1")]["status"] == "skipped"
    assert not list(hosts.glob("*/shop.conf.previous"))


# -- es-rolling-restart.yml ---------------------------------------------------------------------


class EsApi:
    """The part of Elasticsearch's HTTP API the playbook uses, over node files written by
    ``fakees/bin/es-node``. Allocation changes are logged, as the nodes' actions are, to
    the cluster's events.log."""

    def __init__(self, cluster: Path, nodes: list[str]) -> None:
        self.cluster, self.nodes = cluster, nodes
        self.allocation = "all"
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, text: str, code: int = 200) -> None:
                body = text.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/_cat/health"):
                    self._reply(api.health() + "\n")
                elif self.path.startswith("/_cat/nodes"):
                    self._reply("".join(f"{n}\n" for n in api.up()))
                else:
                    self._reply("not found\n", 404)

            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                value = body["persistent"]["cluster.routing.allocation.enable"]
                api.set_allocation(value)
                self._reply('{"acknowledged":true}')

            def do_POST(self) -> None:
                self._reply('{"_shards":{"failed":0}}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def up(self) -> list[str]:
        return [n for n in self.nodes if (self.cluster / n).read_text().strip() == "up"]

    def health(self) -> str:
        return (
            "green" if len(self.up()) == len(self.nodes) and self.allocation == "all" else "yellow"
        )

    def set_allocation(self, value: str) -> None:
        self.allocation = value
        with open(self.cluster / "events.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with open(self.cluster / "events.log", "a") as log:
                log.write(f"allocation {value} {time.time():.6f}\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def es(tmp_path: Path, fleet_factory) -> Iterator[tuple[Path, Path, Fleet, EsApi]]:
    fleet = fleet_factory(3, prefix="es")
    playbook = _playbook(tmp_path, "es-rolling-restart.yml")
    shutil.copytree(DATA / "fakees", tmp_path / "es")
    node = tmp_path / "es" / "bin" / "es-node"
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    lines = []
    for fh in fleet:
        (cluster / fh.name).write_text("up\n")
        lines.append(
            _host_line(
                fh.name,
                fh,
                fleet,
                es_stop=f"{node} stop {cluster / fh.name}",
                es_start=f"{node} start {cluster / fh.name}",
            )  # fmt: skip
        )
    api = EsApi(cluster, fleet.names)
    (tmp_path / "inventory" / "es.ini").write_text(
        "[es]\n" + "\n".join(lines) + f"\n\n{CONTROLLER}[all:vars]\nes_url={api.url}\n"
    )
    yield playbook, tmp_path, fleet, api
    api.close()


def _most_down(log: list[tuple[str, str, float]], nodes: list[str]) -> int:
    down: set[str] = set()
    most = 0
    for action, name, _ in log:
        if action == "stop":
            down.add(name)
        elif action == "start":
            down.discard(name)  # a failed start is handled below: the node file says
        most = max(most, len(down))
    return most


def test_es_rolling_restart_restarts_one_node_at_a_time_with_allocation_limited(es) -> None:
    playbook, tmp, fleet, api = es
    done = _apply(tmp, playbook, fleet)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    log = _log(tmp / "cluster" / "events.log")
    assert [(a, n) for a, n, _ in log] == [
        *[
            step
            for node in ("es1", "es2", "es3")
            for step in (
                ("allocation", "primaries"),
                ("stop", node),
                ("start", node),
                ("allocation", "all"),
            )
        ],
        ("allocation", "all"),  # the runbook's always step
    ]
    assert _most_down(log, fleet.names) == 1
    assert api.health() == "green"


def test_an_aborted_es_restart_ends_with_allocation_enabled_and_exit_1(es) -> None:
    playbook, tmp, fleet, api = es
    (tmp / "cluster" / "es2.broken").touch()  # es2 does not start again
    done = _apply(tmp, playbook, fleet)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr
    log = [(a, n) for a, n, _ in _log(tmp / "cluster" / "events.log")]
    # es2 failed to start: the run halted before es3 stopped, with allocation limited ...
    assert log[:6] == [
        ("allocation", "primaries"), ("stop", "es1"), ("start", "es1"), ("allocation", "all"),
        ("allocation", "primaries"), ("stop", "es2"),
    ]  # fmt: skip
    assert ("stop", "es3") not in log
    # ... and the always step enabled it again before the run ended.
    assert log[-2:] == [("start", "es2"), ("allocation", "all")]
    assert api.allocation == "all"
    finished = [e for e in events(done.stdout) if e["event"] == "run_finished"][0]
    assert finished["status"] == "halted" and finished["exit_code"] == 1
    results = _results(done.stdout)
    assert results[("Make sure allocation is enabled", "localhost")]["status"] == "ok"
    assert results[("Stop the node", "es3")]["status"] == "cancelled"


def test_ctrl_c_during_an_es_restart_still_enables_allocation(es) -> None:
    playbook, tmp, fleet, api = es
    (tmp / "known_hosts").write_text(fleet.known_hosts_text())
    proc = start(
        "apply", "--yes", "--known-hosts", str(tmp / "known_hosts"), str(playbook), cwd=tmp
    )
    log_path = tmp / "cluster" / "events.log"
    try:
        wait_for(lambda: ("stop", "es2") in [(a, n) for a, n, _ in _log(log_path)], 120, "es2")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:] + err
    assert "then running the always steps" in err
    log = [(a, n) for a, n, _ in _log(log_path)]
    assert log[-1] == ("allocation", "all") and api.allocation == "all"
    assert ("stop", "es3") not in log
