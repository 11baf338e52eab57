"""Host names folded into Ansible ranges: one function for plan text, console and recap."""

from __future__ import annotations

import pytest

from runbook.inventory.ranges import expand_host
from runbook.plan.text import compact

CASES = [
    ([f"host{i}" for i in range(1, 51)], "host[1:50]"),
    ([f"web{i:02d}" for i in range(1, 41)] + ["db1"], "web[01:40], db1"),
    # Ansible refuses [08:101]: a zero-padded range has one width.
    ([f"web{i:02d}" for i in range(8, 103)], "web[08:99], web[100:102]"),
    (["a9", "a10", "a010", "a011", "x", "a0", "a1"], "a[9:10], a[010:011], x, a[0:1]"),
    (["n007", "rack1-n1", "rack1-n2", "rack2-n1"], "n007, rack1-n[1:2], rack2-n1"),
    (["h1", "h3", "h4"], "h1, h[3:4]"),
]


@pytest.mark.parametrize(("names", "folded"), CASES)
def test_folds_runs_of_numbers_of_any_width(names: list[str], folded: str) -> None:
    assert compact(names) == folded


@pytest.mark.parametrize(("names", "folded"), CASES)
def test_a_fold_expands_back_to_the_same_hosts_as_ansible_reads_it(
    names: list[str], folded: str
) -> None:
    """Each part is an Ansible range pattern: expanded (``inventory.ranges``), the parts
    give back exactly the names, in order."""
    back = [name for part in compact(names).split(", ") for name in expand_host(part)[0]]
    assert back == names
