"""Plans as JSON: a round trip keeps the plan; what is not a valid plan is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runbook.errors import InputError
from runbook.plan.saved import plan_from_dict, plan_to_dict, save_plan
from tests.plan.test_planner import plan_of

DATA = Path(__file__).resolve().parents[1] / "data" / "runbooks"


@pytest.mark.parametrize("name", ["patterns.yml", "procedures.yml", "rolling_restart.yml"])
def test_a_plan_survives_its_json(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_GOLDEN_DB_PASSWORD", "pw")
    plan = plan_of(DATA / name)
    data = json.loads(json.dumps(plan_to_dict(plan, os.path.abspath)))
    back = plan_from_dict(data, str(DATA / "x.json"))
    # Every command as it was (a step's column is not stored: positions are file:line).
    assert back.commands == plan.commands
    assert [c.templates for c in back.commands] == [c.templates for c in plan.commands]
    assert [(s.name, s.spec, s.max_failures) for s in back.leaf_steps()] == [
        (s.name, s.spec, s.max_failures) for s in plan.leaf_steps()
    ]
    assert plan_to_dict(back, os.path.abspath) == data  # and back again, byte for byte


def test_a_saved_plan_finds_its_runbook_from_anywhere(tmp_path: Path) -> None:
    plan = plan_of(DATA / "patterns.yml")
    out = tmp_path / "plans" / "p.json"
    out.parent.mkdir()
    save_plan(plan, str(out))
    data = json.loads(out.read_text())
    assert not os.path.isabs(data["source"])
    assert plan_from_dict(data, str(out)).source == os.path.normpath(
        os.path.join(out.parent, data["source"])
    )
    assert os.path.samefile(plan_from_dict(data, str(out)).source, DATA / "patterns.yml")


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda d: d["steps"][0]["batches"][0][0].update(timeout="abc"), "timeout"),
        (lambda d: d["steps"][0]["batches"][0][0].update(env={"A;touch X": "1"}), "env"),
        (lambda d: d.update(secret_sources={"pw": {"env": "A", "file": "f"}}), "secret_sources"),
        (lambda d: d.pop("hosts"), "hosts"),
        (lambda d: d.update(version=1), "v1"),
    ],
)
def test_a_damaged_plan_is_refused(damage, why: str) -> None:
    data = plan_to_dict(plan_of(DATA / "patterns.yml"))
    damage(data)
    with pytest.raises(InputError) as err:
        plan_from_dict(data, "p.json")
    assert why in str(err.value) or "valid saved plan" in str(err.value)
