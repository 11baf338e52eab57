"""Partial rendering (SPEC §12): a deferred template shows every part known at plan time.

The property that matters: what is shown, rendered later with the run-time values, gives
exactly what the whole template gives; and no part that reads a run-time value is ever
rendered early.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook.errors import TemplateError
from runbook.templating.env import evaluate, render
from runbook.templating.partial import fold, literal, partial, unparse

PLAN_TIME: dict[str, Any] = {
    "pg": "/usr/bin/fakepg",
    "port": 5432,
    "host": {"name": "pg1", "address": "10.0.0.1"},
    "groups": {"pg": ["pg1", "pg2", "pg3"]},
    "flags": ["-v", "-q"],
    "env": {"PGDATA": "/data"},
}
LATER = frozenset({"winner", "role", "hostvars"})
RUN_TIME: dict[str, Any] = {
    "winner": {"stdout": "pg3", "rc": 0},
    "role": {"stdout": "replica", "rc": 0, "status": "ok"},
    "hostvars": {
        h: {"role": {"stdout": "primary" if h == "pg1" else "replica"}}
        for h in ("pg1", "pg2", "pg3")
    },
}


def test_the_issue_example() -> None:
    shown = partial("{{ pg }} repoint {{ winner.stdout }}", PLAN_TIME, LATER)
    assert shown == "/usr/bin/fakepg repoint {{ winner.stdout }}"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (
            "{{ pg }} -p {{ port }} {{ winner.stdout | quote }}",
            "/usr/bin/fakepg -p 5432 {{ winner.stdout | quote }}",
        ),
        # A block that reads only plan-time names is rendered whole, trim_blocks included.
        ("{% for f in flags %}{{ f }} {% endfor %}\n{{ role.stdout }}", "-v -q {{ role.stdout }}"),
        ("{% if port > 1024 %}high{% endif %} {{ role.rc }}", "high {{ role.rc }}"),
        # A block that reads one stays as written, plan-time parts inside it too.
        (
            "{% if role.stdout == 'primary' %}{{ pg }} fence{% endif %}",
            "{% if role.stdout == 'primary' %}{{ pg }} fence{% endif %}",
        ),
        (
            "{% for h in groups.pg %}{{ hostvars[h].role.stdout }} {% endfor %}@{{ host.name }}",
            "{% for h in groups.pg %}{{ hostvars[h].role.stdout }} {% endfor %}@pg1",
        ),
        # Whitespace control: what a `-` strips is stripped from the text beside it.
        ("a  {{- pg -}}  b {{ winner.stdout }}", "a/usr/bin/fakepgb {{ winner.stdout }}"),
        ("x {{ winner.stdout -}}\n  {{ pg }}", "x {{ winner.stdout -}}/usr/bin/fakepg"),
        # Quotes inside a tag do not end it; comments disappear as they do when rendered.
        ("{{ '}}' ~ pg }} {# note #}\n{{ winner.rc }}", "}}/usr/bin/fakepg {{ winner.rc }}"),
        # A rendering that would read as a template is shown as written.
        (
            "{% raw %}{{ pg }}{% endraw %} {{ winner.rc }}",
            "{% raw %}{{ pg }}{% endraw %} {{ winner.rc }}",
        ),
        # An undefined name is not guessed at: the part stays as written.
        ("{{ nope }} {{ pg }}", "{{ nope }} /usr/bin/fakepg"),
        ("no templates at all", "no templates at all"),
    ],
)
def test_parts_known_at_plan_time_are_rendered(source: str, shown: str) -> None:
    assert partial(source, PLAN_TIME, LATER) == shown
    # Rendered later, the shown form gives what the whole template gives.
    if "nope" not in source:
        full = {**PLAN_TIME, **RUN_TIME}
        assert render(shown, full) == render(source, full)


@pytest.mark.parametrize(
    "source",
    [
        "{% set x = pg %}{{ x }} {{ winner.stdout }}",  # state shared between parts
        "{% macro m() %}{{ pg }}{% endmacro %}{{ m() }} {{ winner.stdout }}",
        "{{ pg }} {% if port %}unclosed",
        "{{ pg }} {% else %} {{ winner.stdout }}",
    ],
)
def test_a_template_that_cannot_be_split_is_shown_as_written(source: str) -> None:
    assert partial(source, PLAN_TIME, LATER) == source


def test_a_secret_stand_in_is_shown_never_a_register() -> None:
    ctx = {**PLAN_TIME, "token": "********"}
    shown = partial("curl -H {{ token | quote }} {{ winner.stdout }}", ctx, LATER)
    assert shown == "curl -H '********' {{ winner.stdout }}"


@pytest.mark.parametrize(
    ("expression", "host", "shown"),
    [
        ("role.stdout == 'primary'", "pg1", "role.stdout == 'primary'"),
        (
            "role.stdout == 'replica' and host.name != winner.stdout",
            "pg1",
            "role.stdout == 'replica' and 'pg1' != winner.stdout",
        ),
        # A decisive known value settles it; a neutral one drops out.
        ("host.name == 'pg2' and role.stdout == 'replica'", "pg1", "false"),
        ("host.name == 'pg2' and role.stdout == 'replica'", "pg2", "role.stdout == 'replica'"),
        ("host.name in groups.pg or role.rc != 0", "pg1", "true"),
        ("not (host.name == 'pg9') and role.rc == 0", "pg1", "role.rc == 0"),
        ("hostvars[host.name].role.stdout == 'x'", "pg3", "hostvars['pg3'].role.stdout == 'x'"),
        ("role.rc > port - 5000", "pg1", "role.rc > 432"),
        (
            "(role.stdout | default(pg)) ~ '!' == 'x'",
            "pg1",
            "role.stdout | default('/usr/bin/fakepg') ~ '!' == 'x'",
        ),
        ("winner.stdout in groups.pg", "pg1", "winner.stdout in ['pg1', 'pg2', 'pg3']"),
        ("role.stdout if port else 'no'", "pg1", "role.stdout"),
        ("role.stdout is defined and port is divisibleby(2)", "pg1", "role.stdout is defined"),
    ],
)
def test_a_when_is_folded_to_the_condition_on_this_host(
    expression: str, host: str, shown: str
) -> None:
    ctx = {**PLAN_TIME, "host": {"name": host}}
    assert fold(expression, ctx, LATER) == shown
    full = {**ctx, **RUN_TIME}
    assert evaluate(shown, full) == evaluate(expression, full)


def test_an_expression_that_does_not_parse_is_shown_as_written() -> None:
    assert fold("role.stdout ==", PLAN_TIME, LATER) == "role.stdout =="


def test_a_large_or_structured_value_keeps_its_expression() -> None:
    ctx = {**PLAN_TIME, "many": list(range(50))}
    assert fold("role.rc in many", ctx, LATER) == "role.rc in many"
    assert fold("role.stdout == host", ctx, LATER) == "role.stdout == host"


def test_literals_read_back_as_jinja() -> None:
    for value in ("it's", 'say "hi"', 3, 2.5, True, False, None, ["a", 1, None]):
        assert evaluate(f"x == {literal(value)}", {"x": value})


NAMES = st.sampled_from(["pg", "port", "host.name", "role.stdout", "role.rc", "winner.stdout"])
OPS = st.sampled_from(["==", "!=", "<", ">="])


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        left, right = draw(NAMES), draw(st.sampled_from(["'pg1'", "5432", "0", "'replica'"]))
        if draw(st.booleans()):
            right = draw(NAMES)
        return f"{left} {draw(OPS)} {right}"
    op = draw(st.sampled_from(["and", "or"]))
    inner = f"{draw(expressions(depth + 1))} {op} {draw(expressions(depth + 1))}"
    return f"not ({inner})" if draw(st.booleans()) else f"({inner})"


@given(
    expressions(), st.sampled_from(["pg1", "pg2", "pg3"]), st.sampled_from(["primary", "replica"])
)
def test_folding_never_changes_what_a_condition_decides(
    expression: str, host: str, role: str
) -> None:
    ctx = {**PLAN_TIME, "host": {"name": host}}
    full = {**ctx, **RUN_TIME, "role": {"stdout": role, "rc": 0}}
    try:
        expected = evaluate(expression, full)
    except TemplateError:  # 'pg1' < 0: not a condition anyone writes
        return
    assert evaluate(fold(expression, ctx, LATER), full) == expected


def test_unparse_writes_back_what_parses_to_the_same() -> None:
    from runbook.templating.env import ENV

    for source in (
        "a.b[c](1, k=2) | f(3) is t",
        "not (a or b) and c",
        "-(a + b) * c ** d",
        "x if y else z",
        "[1, (2,), {'k': v}] ~ s[1:2]",
    ):
        node = ENV.parse("{{ " + source + " }}").body[0].nodes[0]  # type: ignore[attr-defined]
        again = ENV.parse("{{ " + unparse(node) + " }}").body[0].nodes[0]  # type: ignore[attr-defined]
        assert again == node, unparse(node)
