"""Rendering a command's templates — ``env``, ``when``, ``run`` — against a context.

One function for both moments a command is rendered: at plan time (every command that
reads neither a secret nor a registered value) and at apply time, just before it runs
(those that do). ``STAND_IN`` is what a secret is rendered as for everything shown or
stored (SPEC §6): a filter applied to it (``urlencode``, ``tojson``, quoting) transforms
the stand-in, never the secret.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from runbook.errors import InputError, Position, TemplateError
from runbook.model.command import Templates
from runbook.templating.env import ENV, evaluate, expression_names, template_names
from runbook.templating.env import render as render_template

JINJA_GLOBALS = frozenset(ENV.globals)


@dataclass(frozen=True)
class Rendered:
    cmd: str
    env: dict[str, str]
    skip_reason: str | None = None


def names_read(parts: Templates) -> frozenset[str]:
    """Every name the templates read (``env`` stands for the env rendered before)."""
    names = set(template_names(parts.run))
    for _, v in (*parts.env, *parts.step_env):
        names |= template_names(v)
    if parts.when is not None:
        names |= expression_names(parts.when)
    return frozenset(names)


def render_parts(
    parts: Templates, ctx: MutableMapping[str, Any], runbook_env: dict[str, str] | None = None
) -> Rendered:
    """Render env, then ``when`` (false: skipped, ``run`` left as written), then ``run``.

    Raises ``TemplateError``/``InputError`` (a NUL byte) at the template's position.
    ``ctx`` gets ``env`` set, as templates read it. ``runbook_env``: the runbook's env
    already rendered for this host (it is the same for every step of a host).
    """
    pos = parts.positions
    env = runbook_env
    if env is None:
        env = render_env(parts.env, ctx, pos)
    ctx["env"] = env
    env = {
        **env,
        **{
            k: render_template(v, ctx, pos.get(f"env.{k}", pos.get("env")))
            for k, v in parts.step_env
        },
    }
    ctx["env"] = env
    if parts.when is not None and not evaluate(parts.when, ctx, pos.get("when")):
        return Rendered(parts.run, env, f"when: {parts.when}")
    cmd = render_template(parts.run, ctx, pos.get("run"))
    _check_nul(parts, cmd, env)
    return Rendered(cmd, env)


def render_env(
    env: tuple[tuple[str, str], ...], ctx: Mapping[str, Any], pos: Mapping[str, Position]
) -> dict[str, str]:
    """The runbook's env, each value rendered (they cannot read ``env`` themselves)."""
    return {k: render_template(v, ctx, pos.get(f"runbook.env.{k}")) for k, v in env}


def _check_nul(parts: Templates, cmd: str, env: dict[str, str]) -> None:
    pos = parts.positions
    if "\0" in cmd:
        raise InputError(
            "the rendered command contains a NUL byte (from a variable?)", pos.get("run")
        )
    for k, v in env.items():
        if "\0" in v:
            where = pos.get(f"env.{k}") or pos.get(f"runbook.env.{k}") or pos.get("env")
            raise InputError(f"env {k}: value contains a NUL byte", where)


def undefined(names: frozenset[str], known: Mapping[str, Any] | frozenset[str]) -> list[str]:
    """Names a template reads that nothing defines (Jinja's globals are defined)."""
    return sorted(n for n in names if n not in known and n not in JINJA_GLOBALS)


def withheld(exc: TemplateError, secrets: tuple[str, ...]) -> TemplateError:
    """An error from rendering with real secret values: its text could hold them (Jinja
    quotes the key it could not find), so only where it happened is kept."""
    names = ", ".join(secrets)
    return TemplateError(
        f"template error with the real value of secret(s) {names} (the message is withheld: "
        "it could show them); the same template renders with stand-ins",
        exc.position,
    )
