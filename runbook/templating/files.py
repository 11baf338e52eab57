"""A copy's ``src`` as a Jinja template: the one strict environment, errors at the
template file's own FILE:LINE (not the runbook's), line endings kept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta

from runbook.errors import InputError, Position
from runbook.templating.env import ENV, compile_file, render_compiled

# A template is rendered whole in memory, once per host: configs and certificates, not
# images. Larger files are copied without ``template: true`` (streamed).
MAX_TEMPLATE = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileTemplate:
    """A compiled file template; ``shown`` is its path as errors name it."""

    shown: str
    template: jinja2.Template
    names: frozenset[str]

    @property
    def position(self) -> Position:
        return Position(self.shown, 1, 1)

    def render(self, context: Mapping[str, Any]) -> bytes:
        """Raises ``TemplateError`` at the template file's line."""
        return render_compiled(self.template, context, self.position).encode("utf-8")


def parse_template(data: bytes, shown: str, where: Position | None) -> FileTemplate:
    """``data`` (the raw src) as a template. Raises ``InputError``: too large, not UTF-8
    (at ``where``, the step's ``src``), or a syntax error (at the template's line)."""
    if len(data) > MAX_TEMPLATE:
        raise InputError(
            f"src {shown!r} is {len(data)} bytes, too large for template: true "
            f"(at most {MAX_TEMPLATE}); copy it without template: true",
            where,
        )
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"src {shown!r} is not UTF-8 text (byte {exc.start}); template: true needs text",
            where,
        ) from None
    template = compile_file(source, Position(shown, 1, 1))
    names = frozenset(jinja2.meta.find_undeclared_variables(ENV.parse(source)))
    return FileTemplate(shown, template, names)
