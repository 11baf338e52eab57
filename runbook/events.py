"""Run events and the listener protocol. The runner never prints: the console, the JSON
event stream and the journal are all listeners (nornir's processors, in spirit)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

SCHEMA_VERSION = 1

RUN_STARTED = "run_started"
STEP_STARTED = "step_started"
BATCH_STARTED = "batch_started"
COMMAND_STARTED = "command_started"
COMMAND_FINISHED = "command_finished"
STEP_FINISHED = "step_finished"
RUN_FINISHED = "run_finished"


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "event": self.kind,
            "time": round(self.time, 6),
            **self.data,
        }


class Listener(Protocol):
    def handle(self, event: Event) -> None:
        """Called for every event, in order. ``command_started`` comes from worker threads;
        every other event from the runner's thread."""
