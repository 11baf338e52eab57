"""Shared fixtures. The sshd fleet is started once per session; see ``tests/fleet.py``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fleet import SSHD, Fleet, sshd_available


def _require_sshd() -> None:
    """No sshd: a hard failure on CI (the SSH suite must run there), a skip elsewhere."""
    if not sshd_available():
        message = f"{SSHD} is not installed; the SSH tests need OpenSSH's sshd"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def require_sudo() -> None:
    """No sudo: a hard failure on CI (`.ci/run` installs it), a skip elsewhere."""
    if shutil.which("sudo") is None:
        message = "sudo is not installed; the become tests need it (apt-get install sudo)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def sudo() -> None:
    """For tests that run commands through sudo (become)."""
    require_sudo()


@pytest.fixture(scope="session")
def fleet_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Fleet]]:
    """``fleet_factory(size, **Fleet kwargs)``: a started fleet, stopped at session end.

    For tests that kill, freeze or reconfigure hosts, so the shared ``fleet`` stays intact.
    """
    fleets: list[Fleet] = []

    def make(size: int = 5, **kwargs: Any) -> Fleet:
        _require_sshd()
        fleet = Fleet(size, tmp_path_factory.mktemp("fleet"), **kwargs)
        fleets.append(fleet)
        return fleet.start()

    yield make
    for fleet in fleets:
        fleet.stop()


@pytest.fixture(scope="session")
def fleet(fleet_factory: Callable[..., Fleet]) -> Fleet:
    """Five sshd hosts, ``h1`` .. ``h5``. Do not kill or reconfigure them."""
    return fleet_factory(5)
