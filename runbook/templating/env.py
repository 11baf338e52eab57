"""The one Jinja environment: strict (undefined names are errors), no HTML escaping.

Templates are what the runbook writes as such: step fields (``run``, ``env``, ``when``,
``until``, a copy's or fetch's ``src`` and ``dest``), the runbook's ``env``, a copy's
``src`` file with ``template: true``, and ``{{ }}`` in the values of inventory files and
of an include's ``vars`` (rendered lazily, ``lazy``). Other values (the runbook's
``vars``, ``-e``, ``--vars-file``, registered output, an inventory script's output) are
data and are never rendered, so a value that contains ``{{ ... }}`` or ``$(...)``
arrives as written (no template injection).
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
import jinja2.parser
import jinja2.sandbox

from runbook.errors import Position, TemplateError
from runbook.templating.fast import Renderer, compile_fast
from runbook.templating.lookups import GLOBALS as LOOKUP_GLOBALS
from runbook.templating.lookups import rendering_at


class Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose message may come from the object that lacks the name: a
    registered value of a skipped host, ``hostvars[H]`` of a host with no value yet
    (``missing_message(name)``). ``is defined`` and ``default()`` work as with any
    undefined, as in Ansible."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        explain = getattr(self._undefined_obj, "missing_message", None)
        if callable(explain) and isinstance(self._undefined_name, str):
            return str(explain(self._undefined_name))
        return str(jinja2.StrictUndefined._undefined_message.fget(self))  # type: ignore[attr-defined]


def _quote(value: Any) -> str:
    """``shlex.quote`` of the value as text. A filter such as ``tojson`` returns
    ``Markup``, whose ``+`` and ``replace`` HTML-escape their arguments: quoting it as is
    gave ``&#39;...&#39;``, which the shell reads as ``&`` (run in the background) and a
    comment. ``str()`` of a ``Markup`` is plain text; numbers are quoted as they render."""
    return shlex.quote(str(value))


@jinja2.pass_environment
def _extract(env: jinja2.Environment, item: Any, container: Any, morekeys: Any = None) -> Any:
    """Ansible's ``extract``: ``container[item]``, then each of ``morekeys`` —
    ``groups.db | map('extract', hostvars, ['lsn', 'stdout'])`` reads every host's
    registered output. A missing key is undefined (with its container's reason)."""
    keys = [] if morekeys is None else morekeys if isinstance(morekeys, list) else [morekeys]
    value = container
    for key in [item, *keys]:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return env.undefined(obj=value, name=key)
    return value


def _env() -> jinja2.Environment:
    # Sandboxed: runbooks come from git, but vars come from -e and inventories too.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=Undefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,  # as Ansible: a {% for %} line leaves no blank line behind
    )
    env.filters["quote"] = _quote
    env.globals.update(LOOKUP_GLOBALS)  # lookup('env'|'file'|'pipe', ...), query(...)
    env.filters["extract"] = _extract
    return env


ENV = _env()


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compiled once per distinct source, rendered per host."""
    template = ENV.from_string(source)
    # jinja2 keeps a template's globals as a ChainMap, and every render() merges them
    # into a new dict with dict(globals, **vars): iterating a ChainMap runs in Python and
    # was two thirds of the cost of planning. ENV.globals never changes after _env().
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Any:
    return ENV.compile_expression(source, undefined_to_none=False)


_SCALARS = (str, int, float, bool, type(None))
_MISSING = object()
_rendered: dict[tuple[str, tuple[Any, ...]], str] = {}


@lru_cache(maxsize=4096)
def fast_renderer(source: str) -> Renderer | None:
    """The fast path's compiled form, or None outside its subset (Jinja renders it)."""
    return compile_fast(ENV.parse(source), ENV.filters)


@lru_cache(maxsize=4096)
def _names(source: str) -> tuple[str, ...]:
    """The variables a template reads (globals and filters' names included)."""
    return tuple(sorted(jinja2.meta.find_undeclared_variables(ENV.parse(source))))


def render(source: str, context: Mapping[str, Any], position: Position | None = None) -> str:
    if "{" not in source:  # fast path: most commands have no template syntax at all
        return source
    fast = fast_renderer(source)
    if fast is not None:  # text and plain interpolations: ~10x Jinja's speed
        text = fast(context)
        if text is not None:
            return text
    with _as_template_error("template", position), _where(source, position):
        # A template is a pure function of the variables it reads: when those are all
        # scalars, the same values give the same text ({{ gphome }} on 1,000 hosts is
        # rendered once). Anything else (a dict like `host`, a missing name) renders.
        values = tuple(context.get(n, _MISSING) for n in _names(source))
        # The types are part of the key: 1 == 1.0 == True, but they render differently.
        # A lookup reads the controller (and a secret's lookup, the secret): not cached.
        scalars = all(isinstance(v, _SCALARS) for v in values) and not may_call_lookup(source)
        key = (source, tuple((type(v), v) for v in values)) if scalars else None
        if key is not None:
            done = _rendered.get(key)
            if done is not None:
                return done
        text = _render(source, context)
        if key is not None and len(_rendered) < 65536:
            _rendered[key] = text
        return text


# A file that ends its lines with CRLF keeps them (Jinja would write "\n" otherwise).
_CRLF_ENV = ENV.overlay(newline_sequence="\r\n")


def compile_file(source: str, position: Position | None = None) -> jinja2.Template:
    """A whole file as a template (``copy`` with ``template: true``). Not cached, since a
    file may be large; errors are at the file's own lines (``position`` is its line 1)."""
    env = _CRLF_ENV if "\r\n" in source else ENV
    with _as_template_error("template", position):
        return env.from_string(source)


def render_compiled(
    template: jinja2.Template, context: Mapping[str, Any], position: Position | None = None
) -> str:
    """Render what ``compile_file`` made; raises ``TemplateError`` at the file's line."""
    with _as_template_error("template", position), rendering_at(position):
        return template.render(context)


_GLOBALS = frozenset(ENV.globals)


@lru_cache(maxsize=4096)
def _globals_in(source: str) -> frozenset[str]:
    """Globals (``range``, ``dict``...) a template may use: Jinja's undeclared-names
    analysis does not list them, so look for their names in the text."""
    return frozenset(g for g in _GLOBALS if g in source)


def _render(source: str, context: Mapping[str, Any]) -> str:
    """``template.render(context)`` without its copy of the context: Jinja merges globals
    and the variables into a new dict on every render, and a planning context (every var,
    ``groups`` of 1,000 hosts) made that copy the largest cost of planning. The context is
    used as it is (``shared``); globals are added only when the template reads one that
    the context lacks."""
    template = compile_template(source)
    wanted = _globals_in(source)
    if wanted and not wanted <= context.keys():
        context = {**ENV.globals, **context}
    try:
        # A Mapping works as the parent (Jinja only reads it); its stubs say dict.
        body = template.root_render_func(
            template.new_context(context, shared=True)  # type: ignore[arg-type]
        )
        return str(ENV.concat(body))
    except Exception:
        ENV.handle_exception()
        raise  # not reached: handle_exception re-raises with template line numbers


def evaluate(source: str, context: Mapping[str, Any], position: Position | None = None) -> bool:
    """A ``when``/``until``/``that`` expression → bool."""
    fast = _defined_test(source)
    if fast is not None:  # `when: x is defined` on every host: no Jinja context per host
        name, wanted = fast
        return (name in context and not isinstance(context[name], jinja2.Undefined)) is wanted
    # An expression is compiled inside a wrapper template: its line numbers mean nothing.
    with (
        _as_template_error("expression", position, lines=False, source=source),
        _where(source, position, expression=True),
    ):
        return bool(compile_expression(source)(**context))


@lru_cache(maxsize=1024)
def _defined_test(source: str) -> tuple[str, bool] | None:
    """``NAME is defined`` → (NAME, True); ``NAME is undefined``, ``NAME is not defined``
    and ``not NAME is defined`` → (NAME, False); None for any other expression (or a
    NAME that is one of Jinja's globals, which a context may lack). Parsed as
    ``compile_expression`` parses."""
    try:
        parser = jinja2.parser.Parser(ENV, source, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            return None
    except jinja2.TemplateSyntaxError:
        return None
    wanted = True
    if isinstance(node, jinja2.nodes.Not):
        node, wanted = node.node, False
    if (
        not isinstance(node, jinja2.nodes.Test)
        or node.name not in ("defined", "undefined")
        or node.args
        or node.kwargs
        or node.dyn_args
        or node.dyn_kwargs
        or not isinstance(node.node, jinja2.nodes.Name)
        or node.node.name in ENV.globals
    ):
        return None
    return node.node.name, wanted is (node.name == "defined")


@lru_cache(maxsize=4096)
def template_names(source: str) -> frozenset[str]:
    """Names a template reads; a syntax error reads nothing (``check_syntax`` reports it)."""
    if "{" not in source:
        return frozenset()
    try:
        return frozenset(_names(source))
    except jinja2.TemplateSyntaxError:
        return frozenset()


@lru_cache(maxsize=1024)
def expression_names(source: str) -> frozenset[str]:
    """Names an expression reads, so they can be checked (and bound) at plan time; a
    syntax error reads nothing (``check_syntax`` reports it)."""
    try:
        return frozenset(_names("{{ " + source + " }}"))
    except jinja2.TemplateSyntaxError:
        return frozenset()


def check_syntax(source: str, position: Position | None = None, expression: bool = False) -> None:
    with _as_template_error("template", position, source=source if expression else None):
        if expression:
            compile_expression(source)
        elif "{" in source and fast_renderer(source) is None:
            # A template of the fast subset parsed, and holds nothing Jinja's compiler
            # could refuse (its filters exist): compiling it (~1 ms) would tell nothing.
            compile_template(source)


@lru_cache(maxsize=4096)
def may_call_lookup(source: str, expression: bool = False) -> bool:
    """Whether a template (or an expression) names ``lookup``, ``query`` or ``q``: the
    only way to a lookup (``runbook.templating.lookups``). Jinja's undeclared-names
    analysis leaves globals out, so its names read cannot tell."""
    if "{" not in source and not expression:
        return False
    try:
        tree = ENV.parse("{{ " + source + " }}" if expression else source)
    except jinja2.TemplateSyntaxError:
        return True  # not for here to decide: say yes
    return any(n.name in LOOKUP_GLOBALS for n in tree.find_all(jinja2.nodes.Name))


def _where(
    source: str, position: Position | None, expression: bool = False
) -> contextlib.AbstractContextManager[None]:
    """Where a template that calls a lookup is written (relative paths start there)."""
    if may_call_lookup(source, expression):
        return rendering_at(position)
    return contextlib.nullcontext()


_BRACES = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)


def braces_message(expression: str) -> str | None:
    """What to say about ``{{ }}`` written inside an expression (``when``, ``until``,
    ``that``): it is Jinja already, and Jinja's own message ("expected token ':', got
    '}'") reads a dict literal there. ``None`` when the expression has no braces."""
    if "{{" not in expression and "{%" not in expression:
        return None
    bare = _BRACES.sub(r"\1", expression)
    return "an expression is Jinja already: write it without {{ }}" + (
        f" ({bare!r})" if bare != expression and "{" not in bare else ""
    )


@contextlib.contextmanager
def _as_template_error(
    kind: str, position: Position | None, lines: bool = True, source: str | None = None
) -> Iterator[None]:
    """Jinja's exceptions → one ``TemplateError``, at the template line Jinja knows.
    ``source``: the expression being compiled, for the message about braces in it."""

    def at(line: int | None) -> Position | None:
        return _at(position, line) if lines else position

    try:
        yield
    except jinja2.TemplateSyntaxError as exc:
        braces = braces_message(source) if source is not None else None
        if braces is not None:
            raise TemplateError(braces, position) from None
        raise TemplateError(f"{kind} syntax: {exc.message}", at(exc.lineno)) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(str(exc.message), at(_template_line(exc))) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{kind} error: {exc}", at(_template_line(exc))) from None
    except Exception as exc:  # a filter or test may raise anything on the values it gets
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise TemplateError(f"{kind} error: {what}", at(_template_line(exc))) from None


def _template_line(exc: BaseException) -> int | None:
    """The template line being rendered when ``exc`` was raised (Jinja rewrites tracebacks
    so that template frames carry template line numbers)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _at(position: Position | None, lineno: int | None) -> Position | None:
    if position is None or not lineno or lineno <= 1:
        return position
    return Position(position.file, position.line + lineno - 1, 1)
