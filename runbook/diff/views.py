"""A ``PlanDiff`` for people and tools: text (a terminal, coloured or not), JSON, and
markdown for a pull-request comment. Deterministic: same diff, same bytes.

A diff shows text a pull request's author wrote. Control, bidi and zero-width characters
are shown escaped (``runbook.text``) in every format — as visible escapes in text and
markdown, as JSON's own escapes in JSON — so a change cannot rewrite the lines around it on
a reviewer's terminal, hide inside a comment, or pass for text it is not.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from difflib import SequenceMatcher
from typing import Any

from runbook.diff.compare import (
    ADDED,
    CHANGED,
    MOVED,
    REMOVED,
    UNCHANGED,
    Change,
    CommandDiff,
    CommandView,
    PlanDiff,
    StepDiff,
)
from runbook.options import Format
from runbook.plan.text import compact, counted
from runbook.text import STAND_IN, printable, printable_json

NONE = "(none)"
_MARK = {ADDED: "+", REMOVED: "-", CHANGED: "~", MOVED: "~"}
_ANSI = {"+": "32", "-": "31", "~": "33", "h": "1"}


def summary(diff: PlanDiff) -> str:
    """One line: ``3 steps changed, 1 added; 12 hosts affected``."""
    if not diff.changed:
        return "no differences: both plans run the same commands"
    named = [(status, n) for status, n in diff.counts().items() if n]
    parts = [f"{counted(n, 'step') if i == 0 else n} {s}" for i, (s, n) in enumerate(named)]
    if diff.hosts:
        changed = len({h for d in diff.hosts for h in d.hosts})
        parts.append(f"connection changed on {counted(changed, 'host')}")
    parts += [f"{c.name} changed" for c in diff.plan]
    return f"{', '.join(parts)}; {counted(len(diff.affected_hosts()), 'host')} affected"


def render(diff: PlanDiff, fmt: Format, color: bool = False) -> str:
    """``fmt``: text, json or markdown."""
    if fmt == Format.JSON:
        return diff_json(diff)
    if fmt == Format.MARKDOWN:
        return diff_markdown(diff)
    return diff_text(diff, color)


def diff_json(diff: PlanDiff) -> str:
    return printable_json(json.dumps(diff.to_dict(), indent=2, ensure_ascii=False)) + "\n"


# -- values as shown ----------------------------------------------------------------------


def show(value: Any) -> str:
    """A setting or bound value on one line: text as written, the rest as JSON."""
    if value is None:
        return NONE
    if isinstance(value, str):
        return value if "\n" not in value else json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _env_value(value: str | None) -> str:
    if value is None:
        return NONE
    return value if value == STAND_IN else shlex.quote(value)


def _batches(batches: list[list[str]]) -> str:
    return " | ".join(compact(b) for b in batches)


def _index(step: StepDiff, changed: bool = False) -> str:
    """``[3] Name    group, moved from [5]`` (``changed``: say so too, as a heading must)."""
    notes = []
    if step.kind == "group":
        notes.append("group" if step.status != UNCHANGED else "group: inner steps changed")
    if step.status == REMOVED:
        notes.append(f"removed (was [{step.old_index}])")
    elif step.status == ADDED or (changed and step.status == CHANGED):
        notes.append(step.status)
    if step.moved:
        notes.append(f"moved from [{step.old_index}]")
    head = step.name if step.new_index is None else f"[{step.new_index}] {step.name}"
    return head + ("    " + ", ".join(notes) if notes else "")


def _setting_lines(change: Change, indent: str) -> list[tuple[str, str]]:
    """``(style, line)`` for one changed setting; batches list their hosts."""
    if change.name == "batches":
        old, new = change.old or [], change.new or []
        if change.kind != CHANGED:
            return [("", f"{indent}batches: {_batches(old or new)}")]
        return [
            ("", f"{indent}batches: {len(old)} → {len(new)}"),
            ("-", f"{indent}  - {_batches(old)}"),
            ("+", f"{indent}  + {_batches(new)}"),
        ]
    return [("", f"{indent}{change.name}: {show(change.old)} → {show(change.new)}")]


def _one_sided_settings(settings: tuple[Change, ...], indent: str) -> list[tuple[str, str]]:
    """A whole step's settings on one line (batches apart), as the plan shows them."""
    plain = [c for c in settings if c.name != "batches"]
    lines = []
    if plain:
        value = (lambda c: c.new) if plain[0].kind == ADDED else (lambda c: c.old)
        lines.append(("", indent + "    ".join(f"{c.name}: {show(value(c))}" for c in plain)))
    for c in settings:
        if c.name == "batches":
            lines += _setting_lines(c, indent)
    return lines


# -- commands -----------------------------------------------------------------------------


def _body(cd: CommandDiff) -> list[tuple[str, str]]:
    """A command change's lines, each starting with ``+``, ``-`` or a space (as a
    ``diff`` fence wants); its hosts are the line above."""
    if cd.change == CHANGED:
        assert cd.old is not None and cd.new is not None
        prompt = _prompt(cd.new, where=cd.old.delegate == cd.new.delegate)
        lines = [] if any(c.name == "cmd" for c in cd.details) else _cmd(" ", prompt, cd.new.cmd)
        for change in cd.details:
            lines += _detail_lines(change, prompt)
        return lines
    mark = _MARK[cd.change]
    view = cd.new or cd.old
    assert view is not None
    if view.skipped is not None:
        return [(mark, f"{mark} (skipped: {view.skipped})")]
    lines = _cmd(mark, _prompt(view), view.cmd)
    if view.env:
        env = " ".join(f"{k}={_env_value(v)}" for k, v in view.env.items())
        lines.append((mark, f"{mark}   env: {env}"))
    notes = _notes(view)
    if notes:
        lines.append((mark, f"{mark}   ({notes})"))
    return lines


def _prompt(view: CommandView, where: bool = True) -> str:
    """``$ `` before a shell command; none before a copy's, fetch's, wait's, reboot's,
    set's or assert's summary; ``→ DELEGATE`` first for a delegated command (as the plan),
    unless ``where`` is false (the delegate changed: a detail line says so)."""
    shell = not (view.transfer or view.wait or view.controlled is not None)
    prompt = "$ " if shell else ""
    return prompt if view.delegate is None or not where else f"→ {view.delegate}  {prompt}"


def _cmd(mark: str, lead: str, text: str) -> list[tuple[str, str]]:
    first, *rest = text.rstrip("\n").split("\n")
    style = mark.strip()
    pad = " " * len(lead)
    return [(style, f"{mark} {lead}{first}"), *((style, f"{mark} {pad}{ln}") for ln in rest)]


def _notes(view: CommandView) -> str:
    notes = []
    if view.deferred:
        notes.append(f"deferred: reads {', '.join(view.deferred)}")
    if view.secret:
        notes.append(f"secret: {', '.join(view.secret)}")
    if view.when:
        notes.append(f"when: {view.when} (decided at apply)")  # as the plan shows it
    notes += [f"{k}: {show(v)}" for k, v in view.settings.items()]
    return "; ".join(notes)


def _detail_lines(change: Change, prompt: str = "$ ") -> list[tuple[str, str]]:
    """One difference inside a changed command: a command or template as -/+ lines,
    anything else on one line."""
    block = change.name in ("cmd", "template.run") or any(
        isinstance(v, str) and "\n" in v for v in (change.old, change.new)
    )
    if block:
        lead = prompt if change.name == "cmd" else f"{_label(change.name)}: "
        if change.old is not None and change.new is not None:
            return _line_diff(str(change.old), str(change.new), lead)
        lines: list[tuple[str, str]] = []
        for mark, value in (("-", change.old), ("+", change.new)):
            lines += [(mark, f"{mark} {NONE}")] if value is None else _cmd(mark, lead, value)
        return lines
    if change.name.startswith("env."):
        old, new = _env_value(change.old), _env_value(change.new)
    else:
        old, new = show(change.old), show(change.new)
    return [("", f"  {_label(change.name)}: {old} → {new}")]


def _line_diff(old: str, new: str, lead: str) -> list[tuple[str, str]]:
    """A multi-line command line by line: its unchanged lines once, as context."""
    a, b = old.rstrip("\n").split("\n"), new.rstrip("\n").split("\n")

    def line(mark: str, i: int, text: str) -> tuple[str, str]:
        return (mark.strip(), f"{mark} {lead if i == 0 else ' ' * len(lead)}{text}")

    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [line(" ", i, a[i]) for i in range(i1, i2)]
            continue
        out += [line("-", i, a[i]) for i in range(i1, i2)]
        out += [line("+", j, b[j]) for j in range(j1, j2)]
    return out


def _label(name: str) -> str:
    """``env.PGPORT`` → ``env PGPORT``; ``template.env.X`` → ``template env X``."""
    for prefix in ("template.env.", "template.step_env.", "env.", "values.", "until_vars."):
        if name.startswith(prefix):
            return prefix[:-1].replace(".", " ") + " " + name[len(prefix) :]
    if name.startswith("settings."):
        return name[len("settings.") :]
    return {"when": "when (decided at apply)", "template.run": "template"}.get(name, name)


def _command_lines(cd: CommandDiff, indent: str) -> list[tuple[str, str]]:
    mark = _MARK[cd.change]
    lines = [(mark, f"{indent}{mark} {compact(cd.hosts)}")]
    return lines + [(style, f"{indent}    {text}") for style, text in _body(cd)]


# -- text ---------------------------------------------------------------------------------


def _step_lines(step: StepDiff, indent: str) -> list[tuple[str, str]]:
    mark = _MARK.get(step.status, " ")
    lines = [("h" + mark, f"{indent}{mark} {_index(step)}")]
    inner = indent + "    "
    if step.status in (ADDED, REMOVED):
        lines += _one_sided_settings(step.settings, inner)
    else:
        for change in step.settings:
            lines += _setting_lines(change, inner)
    for cd in step.commands:
        lines += _command_lines(cd, inner)
    for s in step.steps:
        lines += _step_lines(s, inner)
    return lines


def _header(diff: PlanDiff) -> list[tuple[str, str]]:
    lines = [("-", f"--- {diff.old}"), ("+", f"+++ {diff.new}"), ("h", summary(diff))]
    if diff.changed and diff.affected_hosts():
        lines.append(("", f"hosts affected: {compact(diff.affected_hosts())}"))
    for c in diff.plan:
        lines.append(("", f"runbook {c.name}: {show(c.old)} → {show(c.new)}"))
    for hd in diff.hosts:
        for c in hd.changes:
            what = f"{compact(hd.hosts)}: {c.name}: {show(c.old)} → {show(c.new)}"
            lines.append(("~", f"host {what}"))
    return lines


def diff_text(diff: PlanDiff, color: bool = False) -> str:
    """The diff for a terminal or a log; ``color`` adds ANSI colours (the CLI decides:
    a terminal, and no ``NO_COLOR``)."""
    lines = _header(diff)
    for step in diff.steps:
        lines.append(("", ""))
        lines += _step_lines(step, "")
    paint: Callable[[str, str], str] = _paint if color else (lambda style, text: text)
    return "".join(paint(style, printable(text, multiline=False)) + "\n" for style, text in lines)


def _paint(style: str, text: str) -> str:
    codes = [_ANSI[c] for c in style if c in _ANSI]
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m" if codes and text else text


# -- markdown -----------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")


def _md(text: str) -> str:
    """Text safe in a markdown heading or paragraph (no markup, no HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", printable(text, multiline=False).replace("&", "&amp;"))


def _code(text: str, table: bool = False) -> str:
    """An inline code span that ``text`` cannot break out of (nor out of a table cell)."""
    text = printable(text).replace("\n", "⏎")
    if table:
        text = text.replace("|", "\\|")
    ticks = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(lines: list[str], lang: str) -> list[str]:
    body = [printable(ln, multiline=False) for ln in lines]
    longest = max((len(m) for ln in body for m in re.findall("`+", ln)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}{lang}", *body, ticks]


def _md_settings(step: StepDiff) -> list[str]:
    if not step.settings:
        return []
    if step.status in (ADDED, REMOVED):
        rows = ["| setting | value |", "| --- | --- |"]
        for c in step.settings:
            value = c.new if step.status == ADDED else c.old
            text = _batches(value) if c.name == "batches" else show(value)
            rows.append(f"| {_md(c.name)} | {_code(text, table=True)} |")
        return [*rows, ""]
    rows = ["| setting | old | new |", "| --- | --- | --- |"]
    for c in step.settings:
        if c.name == "batches":
            old = f"{len(c.old)}: {_batches(c.old)}" if c.old else NONE
            new = f"{len(c.new)}: {_batches(c.new)}" if c.new else NONE
        else:
            old, new = show(c.old), show(c.new)
        rows.append(f"| {_md(c.name)} | {_code(old, table=True)} | {_code(new, table=True)} |")
    return [*rows, ""]


def _md_commands(step: StepDiff) -> list[str]:
    out: list[str] = []
    for cd in step.commands:
        out.append(f"{_code(compact(cd.hosts))} {cd.change}:")
        out += [*_fence([text for _, text in _body(cd)], "diff"), ""]
    return out


def _md_step(step: StepDiff, level: int) -> list[str]:
    out = [f"{'#' * level} {_md(_index(step, changed=True)).replace('    ', ' · ', 1)}", ""]
    out += _md_settings(step)
    out += _md_commands(step)
    for s in step.steps:
        out += _md_step(s, level + 1)
    return out


MARKDOWN_LIMIT = 60_000  # GitHub refuses a comment over 65,536 characters


def diff_markdown(diff: PlanDiff, limit: int = MARKDOWN_LIMIT) -> str:
    """A pull-request comment: the summary, then a section per changed step with its
    settings as a table and its commands in ``diff`` fences. Sections that would take it
    past ``limit`` characters are left out, and it says how many."""
    head = ["## runbook diff", "", f"**{_md(summary(diff))}**", ""]
    head += [f"old: {_code(diff.old)} → new: {_code(diff.new)}", ""]
    if diff.changed and diff.affected_hosts():
        head += [f"hosts affected: {_code(compact(diff.affected_hosts()))}", ""]
    head += _md_plan(diff)
    text = "\n".join(head)
    sections = ["\n".join(_md_step(step, 3)) for step in diff.steps]
    for i, section in enumerate(sections):
        if len(text) + len(section) + 200 > limit:
            rest = len(sections) - i
            text += (
                f"\n_… and {counted(rest, 'more step')}: too long for a comment; "
                "run `runbook diff` to see them._\n"
            )
            break
        text += "\n" + section
    return text.rstrip("\n") + "\n"


def _md_plan(diff: PlanDiff) -> list[str]:
    """The runbook's own changes and hosts' connections, as one table."""
    if not (diff.plan or diff.hosts):
        return []
    rows = ["| what | old | new |", "| --- | --- | --- |"]
    cells: list[tuple[str, Change]] = [(f"runbook {_md(c.name)}", c) for c in diff.plan]
    for hd in diff.hosts:
        cells += [(f"{_code(compact(hd.hosts), True)} {_md(c.name)}", c) for c in hd.changes]
    for what, c in cells:
        rows.append(f"| {what} | {_code(show(c.old), True)} | {_code(show(c.new), True)} |")
    return [*rows, ""]
