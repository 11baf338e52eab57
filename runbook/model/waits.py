"""A step that waits (``wait_for``) or reboots (``reboot``), as written and as planned.

Neither is a shell command of its own: the controller polls (a TCP port, or a new SSH
session) until a state is reached or the wait's own ``timeout`` passes; ``reboot`` also
runs its ``command`` and ``check`` on the host. The loader reads the action with its
templates (``address``, ``port``, ``command``, ``check``); the planner renders them for each
host, so a planned action holds only plain values and its ``summary`` is what the plan
shows (SPEC section 10).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, replace
from typing import Any

from runbook.errors import Position, SchemaError


class WaitKind(enum.StrEnum):
    WAIT_FOR = "wait_for"
    REBOOT = "reboot"


class PortState(enum.StrEnum):
    STARTED = "started"  # the port accepts a TCP connection
    STOPPED = "stopped"  # it refuses (or nothing answers)


class ConnectionState(enum.StrEnum):
    UP = "up"  # the host accepts a new SSH session
    DOWN = "down"  # it does not


DEFAULT_REBOOT = "shutdown -r now"
DEFAULT_CHECK = "cat /proc/sys/kernel/random/boot_id"
# (timeout, delay) in seconds when the runbook does not say.
DEFAULTS = {WaitKind.WAIT_FOR: (300.0, 1.0), WaitKind.REBOOT: (600.0, 5.0)}
# The fields that are templates, rendered per host at plan time.
TEMPLATED = ("address", "port", "command", "check")


@dataclass(frozen=True)
class WaitAction:
    """``wait_for: {port, address, state, timeout, delay}`` or ``{connection, timeout,
    delay}``; ``reboot: {command, check, timeout, delay}``. ``delay`` is the time between
    two polls; ``timeout`` bounds the whole wait (the step's own ``timeout`` bounds each
    command a reboot runs)."""

    kind: WaitKind
    timeout: float
    delay: float
    port: int | str | None = None  # a template until planned
    address: str | None = None
    state: PortState = PortState.STARTED
    connection: ConnectionState | None = None
    command: str | None = None
    check: str | None = None

    @classmethod
    def read(
        cls, kind: str, raw: dict[str, Any], where: dict[str, Position], step: str
    ) -> WaitAction:
        """The validated action (the schema checked types and bounds); ``where`` holds
        ``wait_for.port``-style positions. Raises ``SchemaError``."""
        wk = WaitKind(kind)
        timeout, delay = DEFAULTS[wk]
        for key in ("timeout", "delay"):
            value = raw.get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise SchemaError(
                    f"{kind}.{key}: {value} is not a number of seconds",
                    where.get(f"{kind}.{key}"),
                    step=step,
                )
        timeout = float(raw.get("timeout", timeout))
        delay = float(raw.get("delay", delay))
        if wk is WaitKind.REBOOT:
            return cls(
                wk,
                timeout,
                delay,
                command=str(raw.get("command", DEFAULT_REBOOT)),
                check=str(raw.get("check", DEFAULT_CHECK)),
            )
        if ("port" in raw) == ("connection" in raw):
            raise SchemaError(
                "wait_for needs one of port: (a TCP port polled from the controller) or "
                "connection: up|down (a new SSH session)",
                where.get("wait_for"),
                step=step,
            )
        if "connection" in raw:
            for key in ("address", "state"):
                if key in raw:
                    raise SchemaError(
                        f"wait_for.{key} goes with port:, not connection:",
                        where.get(f"wait_for.{key}"),
                        step=step,
                    )
            return cls(wk, timeout, delay, connection=ConnectionState(raw["connection"]))
        port = raw["port"]
        return cls(
            wk,
            timeout,
            delay,
            port=port if isinstance(port, int) else str(port),
            address=str(raw.get("address", "{{ host.address }}")),
            state=PortState(raw.get("state", PortState.STARTED)),
        )

    def templates(self) -> dict[str, str]:
        """The fields that are templates, by name (rendered per host at plan time)."""
        out = {}
        for name in TEMPLATED:
            value = getattr(self, name)
            if isinstance(value, str):
                out[name] = value
        return out

    def rendered(self, values: dict[str, str]) -> WaitAction:
        """This action with its templates replaced by ``values``; a port must then be a
        number from 1 to 65535. Raises ``ValueError`` with what is wrong."""
        done: WaitAction = replace(self, **values)  # type: ignore[arg-type]
        if isinstance(done.port, str):
            text = done.port.strip()
            if not text.isdigit() or not 1 <= int(text) <= 65535:
                raise ValueError(f"port {done.port!r} is not a port number (1-65535)")
            done = replace(done, port=int(text))
        return done

    @property
    def brings_back(self) -> bool:
        """A host that went unreachable is back once this succeeds (SPEC section 10)."""
        return self.kind is WaitKind.REBOOT or self.connection is ConnectionState.UP

    def summary(self) -> str:
        """The line a reviewer reads in the plan (the command's ``cmd``)."""
        limits = f"timeout {self.timeout:g}s, poll every {self.delay:g}s"
        if self.kind is WaitKind.REBOOT:
            return f"reboot: {self.command} (check: {self.check}; {limits})"
        if self.connection is not None:
            return f"wait_for connection {self.connection.value} ({limits})"
        return f"wait_for port {self.port} on {self.address} {self.state.value} ({limits})"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind.value}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kind" or value is None:
                continue
            if f.name == "state" and self.port is None:
                continue
            d[f.name] = value.value if isinstance(value, enum.Enum) else value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WaitAction:
        connection = d.get("connection")
        return cls(
            kind=WaitKind(d["kind"]),
            timeout=float(d["timeout"]),
            delay=float(d["delay"]),
            port=d.get("port"),
            address=d.get("address"),
            state=PortState(d.get("state", PortState.STARTED)),
            connection=None if connection is None else ConnectionState(connection),
            command=d.get("command"),
            check=d.get("check"),
        )
