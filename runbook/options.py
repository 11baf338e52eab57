"""What the operator asked for, typed: the CLI parses into these; nothing below it sees
``argparse``. Also the Python API's way to say the same things."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.model.plan import Selection

KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a command is killed
# Bytes of each output stream of one command kept in memory and in the journal: the
# first and the last half, the rest counted and dropped (runbook.run.capture).
OUTPUT_CAP = 1 << 20


@dataclass(frozen=True)
class PlanOptions:
    """Inputs of ``validate``, ``plan`` and ``apply``: the file and what shapes its plan."""

    file: str
    extra_vars: tuple[str, ...] = ()  # -e items as written, applied in order
    vars_files: tuple[str, ...] = ()  # --vars-file, applied before every -e
    inventories: tuple[str, ...] = ()  # -i, after the runbook's own
    selection: Selection = Selection()
    # Typed values (the Python API's), applied after -e: (name, value) pairs.
    variables: tuple[tuple[str, Any], ...] = ()

    @property
    def rerenders(self) -> bool:
        """Whether these options change what commands render to (not only which run)."""
        return bool(self.extra_vars or self.vars_files or self.inventories or self.variables)


@dataclass(frozen=True)
class SshOptions:
    host_key_policy: str = "strict"  # strict | accept-new | off
    known_hosts: str | None = None  # default: UserKnownHostsFile, else ~/.ssh/known_hosts
    ssh_config: str | None = None  # default ~/.ssh/config if it exists
    connect_timeout: float = 10.0
    keepalive: float = 5.0  # transport keepalive interval; dead peer detected within 3x
    connect_retries: int = 3  # extra tries after the first, capped exponential backoff + jitter
    kill_grace: float = KILL_GRACE  # TERM -> KILL
    # session: one executor per host (needs python3 there); exec: a channel per command;
    # auto: a session where the host can run one, exec elsewhere.
    transport: str = "auto"


@dataclass(frozen=True)
class RunSettings:
    """What the engine needs of the operator's wishes to run a prepared plan: the CLI's
    ``apply`` and the Python API build it alike."""

    forks: int = 10
    journal: str | None = None  # the journal root; default: .runbook/ beside the runbook
    ssh: SshOptions = field(default_factory=SshOptions)
    resumes: str | None = None  # the run id this run resumes, recorded in its meta.json


@dataclass(frozen=True)
class ApplyOptions:
    plan: PlanOptions
    yes: bool = False
    forks: int = 10
    output: str = "text"  # text | json
    verbose: bool = False
    journal: str | None = None
    resume: str | None = None
    force: bool = False
    rerun_unknown: bool = False
    ssh: SshOptions = field(default_factory=SshOptions)

    @property
    def settings(self) -> RunSettings:
        return RunSettings(self.forks, self.journal, self.ssh, self.resume)
