"""Includes: relative paths, nesting, cycles, vars/tags/when applied to the included steps
(SPEC §5, §8)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runbook.errors import InputError
from runbook.model.plan import Selection
from tests.plan.test_planner import cmds, plan_of


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(
        tmp_path / "lib" / "outer.yml",
        """
        - name: outer step
          run: echo outer {{ who }}
        - include: deeper/inner.yml
          vars: {who: "{{ host.name }}-inner"}
          tags: [deep]
        """,
    )
    write(
        tmp_path / "lib" / "deeper" / "inner.yml",
        """
        - name: inner step
          run: echo inner {{ who }} {{ level }}
          when: level > 1
        """,
    )
    return write(
        tmp_path / "rb.yml",
        """
        name: includes
        hosts:
          g:
            hosts:
              h1: {connection: local, vars: {level: 1, who: host-var}}
              h2: {connection: local, vars: {level: 2, who: host-var}}
        steps:
          - include: lib/outer.yml
            vars: {who: include-var}
            tags: [top]
            when: host.name != "h0"
          - name: last
            hosts: g
            run: echo {{ who }}
        """,
    )


def test_nested_includes_resolve_relative_paths_and_layer_vars(tree: Path) -> None:
    plan = plan_of(tree)
    assert [s.name for s in plan.steps] == ["outer step", "inner step", "last"]
    # Include vars rank above host vars for the included steps only.
    assert cmds(plan, "outer step") == {
        "h1": "echo outer include-var",
        "h2": "echo outer include-var",
    }
    # A nested include's vars override the outer include's, and are templates.
    assert cmds(plan, "inner step")["h2"] == "echo inner h2-inner 2"
    assert cmds(plan, "last") == {"h1": "echo host-var", "h2": "echo host-var"}


def test_include_when_is_anded_and_tags_are_inherited(tree: Path) -> None:
    plan = plan_of(tree)
    inner = next(s for s in plan.steps if s.name == "inner step")
    skipped = {c.host.name: c.skip_reason for c in inner.commands}
    assert skipped["h1"] is not None and "(level > 1)" in skipped["h1"]
    assert skipped["h2"] is None
    assert set(inner.tags) == {"top", "deep"}
    only_deep = plan_of(tree, selection=Selection(tags=("deep",)))
    assert [s.name for s in only_deep.steps] == ["inner step"]


def test_an_error_in_an_included_file_names_that_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "bad.yml", "- name: b\n  hosts: localhost\n  run: echo {{ nope }}\n")
    rb = write(tmp_path / "rb.yml", "name: x\nsteps:\n  - include: bad.yml\n")
    with pytest.raises(InputError) as err:
        plan_of(rb)
    assert str(err.value).startswith(f"{tmp_path / 'bad.yml'}:3:")
    assert "'nope' is undefined" in str(err.value)


def test_an_include_cycle_is_an_input_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "- include: b.yml\n")
    write(tmp_path / "b.yml", "- include: a.yml\n")
    rb = write(tmp_path / "rb.yml", "name: x\nsteps:\n  - include: a.yml\n")
    with pytest.raises(InputError, match="include cycle: rb.yml -> a.yml -> b.yml -> a.yml"):
        plan_of(rb)


def test_an_edited_include_changes_the_runbook_digest(tree: Path) -> None:
    before = plan_of(tree).digest
    inner = tree.parent / "lib" / "deeper" / "inner.yml"
    inner.write_text(inner.read_text().replace("inner {{", "INNER {{"))
    assert plan_of(tree).digest != before  # --resume notices a changed include
