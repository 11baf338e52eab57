"""A 1 GiB copy over SSH, and back: streamed, never whole in memory (``-m soak``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.fleet import Fleet
from tests.reliability.helpers import run_measured

pytestmark = [pytest.mark.soak, pytest.mark.ssh]

GIB = 1 << 30
RSS_BUDGET_MIB = 150.0  # the controller's peak: chunks, not the file


def write_random(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // (8 << 20)):
            block = os.urandom(8 << 20)
            f.write(block)
            h.update(block)
    return h.hexdigest()


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def test_a_one_gib_copy_and_fetch_stream_in_bounded_memory(tmp_path: Path, fleet: Fleet) -> None:
    want = write_random(tmp_path / "big.bin", GIB)
    remote = tmp_path / "remote"
    remote.mkdir()
    rb = tmp_path / "rb.yml"
    rb.write_text(f"""\
name: one gib
hosts:
  fleet: [h1]
steps:
  - name: ship
    hosts: fleet
    timeout: 1800
    copy: {{src: big.bin, dest: {remote}/big.bin}}
  - name: bring back
    hosts: fleet
    timeout: 1800
    fetch: {{src: {remote}/big.bin, dest: back/big.bin}}
""")
    args = ("apply", "--yes", "--output", "json", "--ssh-config", str(fleet.ssh_config), str(rb))
    run = run_measured(*args, cwd=tmp_path, timeout=3600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert digest(remote / "big.bin") == want and digest(tmp_path / "back" / "big.bin") == want
    finished = [json.loads(x) for x in run.stdout.splitlines() if '"command_finished"' in x]
    assert [e["changed"] for e in finished] == [True, True]
    print(f"\n1 GiB copy and fetch: {run.wall:.1f}s wall, peak RSS {run.peak_rss_mib:.0f} MiB")
    assert run.peak_rss_mib < RSS_BUDGET_MIB, run.peak_rss_mib
    again = run_measured(*args, cwd=tmp_path, timeout=3600)
    assert again.returncode == 0, again.stderr
    finished = [json.loads(x) for x in again.stdout.splitlines() if '"command_finished"' in x]
    assert [e["changed"] for e in finished] == [False, False]
