"""Debian's headless Chromium, driven by its own flags (no Selenium, no Playwright).

One launch per check: ``dump_dom`` prints the DOM after the page's scripts ran (and logs
every network request the page made), ``screenshot`` writes a PNG, and ``DevTools`` speaks
the DevTools protocol over ``--remote-debugging-pipe`` to hover and click like a person.
Every launch has a fresh profile, and names resolve nowhere (``MAP * ~NOTFOUND``): even
Chromium's own background requests reach no network.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1400,900",
]


def require_chromium() -> None:
    """No Chromium: a hard failure on CI (.ci/run installs it), a skip elsewhere."""
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is not installed; the report's browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _run(profile: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def dump_dom(page: Path, work: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the URLs of the requests the page made."""
    net_log = work / "netlog.json"
    done = _run(
        work / "profile-dom",
        f"--log-net-log={net_log}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        page.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, page_requests(net_log)


def page_requests(net_log: Path) -> list[str]:
    """URLs requested on behalf of a page (a ``file://`` one), not of the browser itself."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start_job
        and "url" in e.get("params", {})
        and (
            "file://" in e["params"].get("network_isolation_key", "")
            or e["params"].get("initiator") != "not an origin"
        )
    ]


def screenshot(page: Path, work: Path) -> Path:
    png = work / "report.png"
    done = _run(work / "profile-shot", f"--screenshot={png}", page.as_uri())
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    return png


class DevTools:
    """The DevTools protocol over a pipe: Chromium reads commands from its fd 3 and writes
    answers to its fd 4, each a JSON message ending in NUL."""

    def __init__(self, page: Path, work: Path, timeout: float = 20) -> None:
        to_browser_r, self._w = _high_pipe()
        self._r, from_browser_w = _high_pipe()
        self.timeout = timeout
        self._buf = b""
        self._id = 0
        # bash moves the pipe ends to the fds Chromium expects, then becomes Chromium.
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                'exec 3<&"$1" 4>&"$2"; shift 2; exec "$@"',
                "bash",
                str(to_browser_r),
                str(from_browser_w),
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={work / 'profile-cdp'}",
                "--remote-debugging-pipe",
                page.as_uri(),
            ],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.session = self._attach(page)

    def _attach(self, page: Path) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            targets = self.send("Target.getTargets")["targetInfos"]
            pages = [t for t in targets if t["type"] == "page" and t["url"] == page.as_uri()]
            if pages:
                break
            assert time.monotonic() < deadline, f"no page target: {targets}"
            time.sleep(0.1)
        attached = self.send("Target.attachToTarget", targetId=pages[0]["targetId"], flatten=True)
        return str(attached["sessionId"])

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._id:
                assert "error" not in answer, (method, answer["error"])
                return dict(answer["result"])

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, "Chromium did not answer"
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 65536)
                assert chunk, "Chromium closed the pipe"
                self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(message))

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", self.session, expression=expression, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.05)

    def mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        self.send("Input.dispatchMouseEvent", self.session, type=kind, x=x, y=y, **extra)

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._r)
        os.close(self._w)


def _high_pipe() -> tuple[int, int]:
    """A pipe whose fds are above 4, so moving them to 3 and 4 cannot clobber each other."""
    r, w = os.pipe()
    high = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(r)
    os.close(w)
    return high
