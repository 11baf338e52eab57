"""Planning values, checks and loops (SPEC §11): ``set``, ``assert``, ``loop``, templated
settings, and the input errors they bring — through the Python API (loader → inventory
→ planner), as ``runbook plan`` does.
"""

from __future__ import annotations

import pytest

from runbook.errors import InputError
from tests.e2e.helpers import runbook as runbook_cli
from tests.plan.test_planner import plan_of, write


@pytest.mark.parametrize(
    "field,text,suggestion",
    [
        ("when", "when: \"{{ role.stdout }} == 'primary'\"", "role.stdout == 'primary'"),
        ("until", "until: stdout != {{ boot.stdout }}", "stdout != boot.stdout"),
    ],
)
def test_braces_inside_an_expression_say_so(tmp_path, field, text, suggestion):
    path = write(
        tmp_path,
        f"""
        name: braces
        hosts: {{db: [d1]}}
        steps:
          - {{name: boot, hosts: db, run: boot-id, register: boot}}
          - {{name: role, hosts: db, run: role, register: role}}
          - name: act
            hosts: db
            run: act
            {text}
        """,
    )
    with pytest.raises(InputError) as info:
        plan_of(path)
    message = str(info.value)
    assert "an expression is Jinja already: write it without {{ }}" in message
    assert repr(suggestion) in message
    assert "expected token" not in message
    assert "rb.yml:9:" in message and "step 'act'" in message


def test_validate_plan_and_apply_count_steps_alike(tmp_path):
    """``validate`` said "2 steps" where ``plan`` said 4 for the same file."""
    path = write(
        tmp_path,
        """
        name: counted
        hosts: {g: [localhost]}
        steps:
          - {name: one, hosts: g, run: "true"}
          - name: group
            hosts: g
            steps:
              - {name: inner one, run: "true"}
              - {name: inner two, run: "true"}
        """,
    )
    validate = runbook_cli("validate", str(path))
    plan = runbook_cli("plan", str(path))
    apply = runbook_cli("apply", "--yes", str(path), cwd=tmp_path)
    assert validate.returncode == plan.returncode == apply.returncode == 0, apply.stderr
    assert "ok (4 steps, 1 host, 3 commands)" in validate.stdout
    assert "4 steps, 1 host, 3 commands" in plan.stdout
    assert "(4 steps, 1 host, 3 commands, forks 10)" in apply.stdout
