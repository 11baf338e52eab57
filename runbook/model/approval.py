"""Who approved a saved plan (SPEC §12): the principals whose OpenSSH signatures over the
plan file's bytes verified against an ``allowed_signers`` file. Recorded in the journal,
the recap, the events and the report; checked by ``runbook.review.approvals``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Approval:
    principal: str
    key: str  # the signing key's type and fingerprint: "ED25519 SHA256:..."

    def to_dict(self) -> dict[str, str]:
        return {"principal": self.principal, "key": self.key}


@dataclass(frozen=True)
class Approvals:
    """The approvals a run was started with: enough distinct principals signed exactly
    this plan file (``sha256`` of its bytes)."""

    plan: str
    sha256: str
    required: int
    approvers: tuple[Approval, ...]

    @property
    def principals(self) -> list[str]:
        return [a.principal for a in self.approvers]

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "sha256": self.sha256,
            "required": self.required,
            "approvers": [a.to_dict() for a in self.approvers],
        }

    def summary(self) -> str:
        """``approved by alice, bob (2 required)``."""
        return f"approved by {', '.join(self.principals)} ({self.required} required)"
