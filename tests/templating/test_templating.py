"""The one Jinja environment: strict, sandboxed, rendering on a shared context."""

from __future__ import annotations

from collections import ChainMap

import pytest

from runbook.errors import Position, TemplateError
from runbook.templating.env import check_syntax, evaluate, expression_names, render, template_names

AT = Position("rb.yml", 10, 5)


def test_undefined_names_are_errors_at_the_template_line() -> None:
    with pytest.raises(TemplateError) as err:
        render("line one\n{{ nope }}", {}, AT)
    assert err.value.message == "'nope' is undefined"
    assert err.value.position == Position("rb.yml", 11, 1)


def test_memoised_renders_keep_types_apart() -> None:
    # 1 == True == 1.0, but they render differently: the memo key holds the type.
    assert [render("{{ v }}", {"v": v}) for v in (1, True, 1.0)] == ["1", "True", "1.0"]


def test_rendering_does_not_copy_or_change_the_context() -> None:
    base = {"x": "a"}
    ctx = ChainMap({}, base)
    assert render("{% set y = 2 %}{{ x }}{{ y }}", ctx) == "a2"
    assert dict(ctx) == {"x": "a"} and base == {"x": "a"}


def test_globals_are_there_when_the_context_lacks_them() -> None:
    assert render("{% for i in range(3) %}{{ i }}{% endfor %}", {}) == "012"
    assert render("{{ range }}", {"range": "mine"}) == "mine"  # a var wins over a global


def test_any_exception_of_a_filter_is_a_template_error() -> None:
    for source in ('{{ "%(x)s" | format(y=1) }}', "{{ 'abc' | truncate(1) }}", "{{ 1 / 0 }}"):
        with pytest.raises(TemplateError, match="template error"):
            render(source, {}, AT)


def test_the_sandbox_refuses_unsafe_attributes() -> None:
    with pytest.raises(TemplateError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


def test_trim_blocks_leaves_no_blank_lines() -> None:
    assert render("{% for i in [1, 2] %}\necho {{ i }}\n{% endfor %}\n", {}) == "echo 1\necho 2\n"


def test_names_read_and_syntax_errors() -> None:
    names = template_names("{{ a }} {{ b.c | quote }} {% for x in d %}{{ x }}{% endfor %}")
    assert names == {"a", "b", "d"}  # the loop variable and filters are not names read
    assert template_names("no braces") == frozenset()
    assert template_names("{{ broken") == frozenset()  # check_syntax reports it
    assert expression_names("rc == 0 and x in stdout") == {"rc", "x", "stdout"}
    with pytest.raises(TemplateError, match="template syntax"):
        check_syntax("{{ broken", AT)
    with pytest.raises(TemplateError):
        evaluate("rc ==", {"rc": 0}, AT)
    assert evaluate("rc == 0", {"rc": 0}) is True


@pytest.mark.parametrize(
    "source, ctx",
    [
        ("a {{ x }} b", {"x": "1"}),
        ("{{ x | quote }}", {"x": "it's"}),
        ("{{ x | quote }}", {"x": 5}),  # a number is quoted as its text
        ("{{ h.name }}-{{ h['port'] }}", {"h": {"name": "w1", "port": 22}}),
        ("{{ n }} {{ b }} {{ z }}", {"n": 1.5, "b": True, "z": None}),
        ("{{ l[0] }} {{ l[-1] }}", {"l": [3, 4]}),
        ("{{ d.items }}", {"d": {"items": 1}}),  # a method wins in Jinja: not the fast path
        ("{{ x | upper | quote }}", {"x": "a b"}),
        ("-p {{ p + 1 }} {{ p * 2 - 1 }}", {"p": 6000}),
        ("{{ p + 1 }}", {"p": True}),  # bool arithmetic: Jinja's way
        ("{{ h }}", {"h": {"a": 1}}),  # a dict's text: Jinja's way
        ("line\n{{ x }}\n", {"x": "v"}),
        ("{{ x | length }}", {"x": [1, 2]}),
    ],
)
def test_the_fast_path_renders_exactly_as_jinja(source: str, ctx: dict) -> None:
    from runbook.templating.env import compile_template

    assert render(source, dict(ctx)) == compile_template(source).render(ctx)


@pytest.mark.parametrize(
    "source, ctx, message",
    [
        ("{{ nope }}", {}, "'nope' is undefined"),
        ("{{ h.nope }}", {"h": {}}, "has no attribute 'nope'"),
        ("{{ l[5] }}", {"l": [1]}, "no element 5"),
        ("{{ p + 1 }}", {"p": "a"}, "template error"),
    ],
)
def test_what_the_fast_path_cannot_render_fails_as_jinja_says(
    source: str, ctx: dict, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        render(source, ctx, AT)


@pytest.mark.parametrize(
    "source",
    [
        "x is defined",
        "x is undefined",
        "x is not defined",
        "x is not undefined",
        "not x is defined",
        "not (x is undefined)",
        "range is defined",  # a global: Jinja's own way
        "x is defined and x",  # more than the test: Jinja's own way
    ],
)
def test_a_defined_test_decides_as_jinja_does(source: str) -> None:
    import jinja2

    from runbook.templating.env import compile_expression

    for ctx in ({}, {"x": 1}, {"x": None}, {"x": ""}, {"x": jinja2.Undefined()}):
        assert evaluate(source, ctx) is bool(compile_expression(source)(**ctx)), ctx
