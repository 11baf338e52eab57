"""Approvals with real OpenSSH keys (``ssh-keygen`` generates them here): who may approve
comes from an allowed_signers file, exactly as git uses it; a signature counts only over
the plan's exact bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from runbook.errors import InputError
from runbook.plan.saved import DIGEST, plan_digest
from runbook.review.approvals import (
    approve,
    check_signatures,
    key_of,
    signatures_file,
    verified,
)

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    keys = {n: keygen(tmp_path / n, f"{n}@example.com") for n in ("alice", "bob", "mallory")}
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(
        "".join(
            f'{n}@example.com namespaces="runbook-plan" '
            f"{' '.join((keys[n].with_suffix('.pub')).read_text().split()[:2])}\n"
            for n in ("alice", "bob")
        )
    )
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_digested({"format": "runbook-plan", "version": 2, "x": 1})) + "\n")
    return {**keys, "allowed": allowed, "plan": plan}


def _digested(data: dict[str, object]) -> dict[str, object]:
    """A saved plan carries the digest of its own content (SPEC §6)."""
    return {**data, DIGEST: plan_digest(data)}


def fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True)
    bits, fp, *_, kind = out.stdout.split()
    return f"{kind.strip('()')} {fp}"


def verify(w: dict[str, Path], required: int = 2):
    return verified(w["plan"].read_bytes(), str(w["plan"]), required, str(w["allowed"]))


def test_two_listed_principals_approve(world: dict[str, Path]) -> None:
    assert approve(str(world["plan"]), str(world["alice"])) == fingerprint(
        world["alice"].with_suffix(".pub")
    )
    approve(str(world["plan"]), str(world["bob"]))
    got = verify(world)
    assert got.principals == ["alice@example.com", "bob@example.com"]
    assert got.sha256.startswith("sha256:") and got.required == 2


def test_too_few_says_who_signed(world: dict[str, Path]) -> None:
    approve(str(world["plan"]), str(world["alice"]))
    with pytest.raises(InputError) as err:
        verify(world)
    assert "not approved: 1 of 2 required approvals" in str(err.value)
    assert "(alice@example.com); nothing was run" in str(err.value)


def test_no_signatures_at_all(world: dict[str, Path]) -> None:
    with pytest.raises(InputError) as err:
        verify(world, 1)
    assert "0 of 1" in str(err.value)
    assert "no signatures: runbook approve" in str(err.value.others[0])


def test_an_unknown_signer_does_not_count(world: dict[str, Path]) -> None:
    approve(str(world["plan"]), str(world["alice"]))
    approve(str(world["plan"]), str(world["mallory"]))
    with pytest.raises(InputError) as err:
        verify(world)
    (why,) = err.value.others
    assert str(why).endswith(
        f"signature 2 ({fingerprint(world['mallory'].with_suffix('.pub'))}):"
        f" its key is not in {world['allowed']}"
    )


def test_one_principal_signing_twice_counts_once(world: dict[str, Path]) -> None:
    approve(str(world["plan"]), str(world["alice"]))
    approve(str(world["plan"]), str(world["alice"]))
    with pytest.raises(InputError):
        verify(world)
    assert verify(world, 1).principals == ["alice@example.com"]


def test_a_one_byte_change_breaks_every_signature(world: dict[str, Path]) -> None:
    approve(str(world["plan"]), str(world["alice"]))
    approve(str(world["plan"]), str(world["bob"]))
    data = bytearray(world["plan"].read_bytes())
    data[-2] ^= 0x01  # "}" → "|": one bit of one byte
    world["plan"].write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        verify(world, 1)
    assert "0 of 1" in str(err.value)
    assert [str(e).split(": ", 2)[-1] for e in err.value.others] == [
        "it does not verify over this plan (it signs another plan, or this plan changed since)"
    ] * 2


def test_a_signature_over_another_plan_does_not_count(world: dict[str, Path]) -> None:
    other = world["plan"].with_name("other.json")
    other.write_text(json.dumps(_digested({"format": "runbook-plan", "version": 2, "x": 2})) + "\n")
    approve(str(other), str(world["alice"]))
    approve(str(world["plan"]), str(world["bob"]))
    # alice's signature, moved next to this plan, names alice but does not verify.
    with open(signatures_file(str(world["plan"])), "a") as f:
        f.write(Path(signatures_file(str(other))).read_text())
    with pytest.raises(InputError) as err:
        verify(world)
    assert "(bob@example.com)" in str(err.value)
    assert "signature 2" in str(err.value.others[0]) and "does not verify" in str(
        err.value.others[0]
    )


def test_a_namespace_other_than_runbook_plan_does_not_count(world: dict[str, Path]) -> None:
    """A signature made for git (namespace "git") over the same bytes is not an approval."""
    done = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(world["alice"]), "-n", "git"],
        input=world["plan"].read_bytes(),
        capture_output=True,
        check=True,
    )
    Path(signatures_file(str(world["plan"]))).write_bytes(done.stdout)
    with pytest.raises(InputError):
        verify(world, 1)


def test_signatures_without_allowed_signers_are_checked_for_validity_only(
    world: dict[str, Path],
) -> None:
    approve(str(world["plan"]), str(world["mallory"]))
    (s,) = check_signatures(world["plan"].read_bytes(), str(world["plan"]), None)
    assert s.valid and s.principals == () and s.principal is None
    assert s.key == key_of(Path(signatures_file(str(world["plan"]))).read_text())


def test_approving_what_is_not_a_saved_plan_is_refused(tmp_path: Path, world) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text("name: x\nsteps: []\n")
    with pytest.raises(InputError) as err:
        approve(str(rb), str(world["alice"]))
    assert "is not a saved plan" in str(err.value)
    assert not Path(signatures_file(str(rb))).exists()
