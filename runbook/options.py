"""What the operator asked for, typed: the CLI parses into these; nothing below it sees
``argparse``. Also the Python API's way to say the same things."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import UsageError
from runbook.model.plan import Selection
from runbook.model.spec import MAX_TIMEOUT

KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a command is killed
# One worker thread per fork: a million ended the run in "can't start new thread" (exit
# 70) after it had started; a thousand is more than any fleet runs at once.
MAX_FORKS = 1000


def check_forks(forks: object) -> None:
    """``--forks`` is a whole number 1..MAX_FORKS, checked as a runbook's values are:
    exit 2 before anything runs (SPEC §6). Raises ``UsageError``."""
    if isinstance(forks, bool) or not isinstance(forks, int) or not 1 <= forks <= MAX_FORKS:
        raise UsageError(f"--forks {forks!r}: must be a whole number from 1 to {MAX_FORKS}")


def check_seconds(option: str, value: object) -> None:
    """A duration option is a finite number of seconds above 0 and up to 30 days, as a
    step's ``timeout`` is (``nan`` passed every comparison). Raises ``UsageError``."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 0 < number <= MAX_TIMEOUT:
        raise UsageError(
            f"{option} {value!r}: must be a finite number of seconds above 0 and at most "
            f"{MAX_TIMEOUT:.0f} (30 days)"
        )


class Format(enum.StrEnum):
    """How a command prints: ``--format`` of plan, inventory and diff, ``--output`` of apply."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"  # diff only


class HostKeyPolicy(enum.StrEnum):
    """``--host-key-policy``: what an unknown host key does (SPEC §3)."""

    STRICT = "strict"  # known_hosts must match
    ACCEPT_NEW = "accept-new"  # record unknown keys, reject changed ones
    OFF = "off"  # warn only


class Transport(enum.StrEnum):
    """``--transport``: how commands reach an SSH host."""

    AUTO = "auto"  # a session where the host can run one, exec elsewhere
    SESSION = "session"  # one executor per host (needs python3 there)
    EXEC = "exec"  # a channel per command


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
    # Ansible Vault passwords: --vault-id [LABEL@]FILE (--vault-password-file F is F).
    vault_ids: tuple[str, ...] = ()

    @property
    def rerenders(self) -> bool:
        """Whether these options change what commands render to (not only which run)."""
        return bool(self.extra_vars or self.vars_files or self.inventories or self.variables)


@dataclass(frozen=True)
class SshOptions:
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    known_hosts: str | None = None  # default: UserKnownHostsFile, else ~/.ssh/known_hosts
    ssh_config: str | None = None  # default ~/.ssh/config if it exists
    connect_timeout: float = 10.0
    keepalive: float = 5.0  # transport keepalive interval; dead peer detected within 3x
    connect_retries: int = 3  # extra tries after the first, capped exponential backoff + jitter
    kill_grace: float = KILL_GRACE  # TERM -> KILL
    transport: Transport = Transport.AUTO

    def __post_init__(self) -> None:
        check_seconds("--connect-timeout", self.connect_timeout)


@dataclass(frozen=True)
class RunSettings:
    """What the engine needs of the operator's wishes to run a prepared plan: the CLI's
    ``apply`` and the Python API build it alike."""

    forks: int = 10
    journal: str | None = None  # the journal root; default: .runbook/ beside the runbook
    ssh: SshOptions = field(default_factory=SshOptions)
    resumes: str | None = None  # the run id this run resumes, recorded in its meta.json
    # More of meta.json: a discovery run's purpose, the discovery run an apply follows.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_forks(self.forks)


@dataclass(frozen=True)
class ApplyOptions:
    plan: PlanOptions
    yes: bool = False
    forks: int = 10
    output: Format = Format.TEXT  # text | json
    verbose: bool = False
    journal: str | None = None
    resume: str | None = None
    force: bool = False
    rerun_unknown: bool = False
    ssh: SshOptions = field(default_factory=SshOptions)
    # A saved plan runs only when this many principals of allowed_signers signed it.
    require_approvals: int = 0
    allowed_signers: str | None = None

    def __post_init__(self) -> None:
        check_forks(self.forks)

    @property
    def settings(self) -> RunSettings:
        return RunSettings(self.forks, self.journal, self.ssh, self.resume)
