"""``runbook report``: one run's journal as one self-contained HTML file.

The page needs nothing but itself: CSS and JS are inline, allowed by a Content-Security-
Policy that names their sha256 and nothing else, so it opens from ``file://`` on a laptop
with no network and can fetch nothing. Every string in it comes from the journal and is
untrusted (command output from a hostile host included): the HTML parts are escaped here,
and the timeline's data travels as JSON in a ``<script type="application/json">`` that the
page's script reads with ``textContent`` and ``JSON.parse``.

The page is built from the journal alone, forward-compatibly: unknown event kinds and
fields are ignored, a run without ``run_finished`` is "incomplete", and a command that
started but has no result has an "unknown outcome".
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import shlex
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from runbook.errors import JournalError
from runbook.journal.store import RunRecord
from runbook.model.command import Status
from runbook.text import printable, printable_json

STATUSES = tuple(s.value for s in Status)
UNKNOWN = "unknown"  # started, no result: the controller died (SPEC section 6)
FAILURES = tuple(s.value for s in Status if s.is_failure)
# Characters kept of each failed command's stdout and of its stderr (the end: errors are
# usually last). 500 hosts failing differently stay under a few MB; the journal has the rest.
OUTPUT_CAP = 4000
# Characters of output in one page, all failures together: past it, an entry names the
# command that prints its output instead (5,000 failures × 8,000 characters = 40 MB).
OUTPUT_BUDGET = 2_000_000
# Failure groups shown opened; the rest are one click away (keeps 500 failures readable).
OPEN_FAILURES = 5

# Characters that must not reach a <script> element raw, even inside JSON strings (U+2028
# and U+2029 too: ``printable_json`` writes them as escapes, with every invisible one).
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


@dataclass
class _Cmd:
    """One command on the timeline: a result, or a start with no result (``unknown``)."""

    host: str
    step: str
    status: str
    start: float
    end: float
    event: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Step:
    """A step's outcome; ``spans`` holds one (start, end) per time it ran (a group's inner
    steps run once per batch)."""

    status: str = "not run"
    seconds: float | None = None
    spans: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class _Run:
    """What the page shows, gathered from the journal in one pass."""

    run_id: str
    started: dict[str, Any]
    finished: dict[str, Any] | None
    hosts: list[str]
    steps: list[str]
    cmds: list[_Cmd]
    step_info: dict[str, _Step]
    t0: float
    t_end: float


# -- reading the journal -----------------------------------------------------------------------


def _text(value: Any) -> str:
    """A journal value as display text, never ``None``: control, bidi and zero-width
    characters escaped as on every other surface (``runbook.text``), so a terminal escape
    or a reordering character cannot disguise it."""
    if value is None:
        return ""
    return printable(value if isinstance(value, str) else str(value))


def _num(value: Any, default: float) -> float:
    """A finite number from the journal, else ``default`` (JSON allows NaN and Infinity)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _names(items: Any) -> list[str]:
    """Step names from a list of names or of ``{"name": ...}`` (plans); a group's inner
    ``steps`` stand for it, as its commands carry the inner step names."""
    out: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("steps"), list):
            out.extend(_names(item["steps"]))
        elif isinstance(item, dict) and "name" in item:
            out.append(item["name"])
        elif isinstance(item, str):
            out.append(item)
    return out


def _ordered(*sources: list[Any]) -> list[str]:
    return list(dict.fromkeys(_text(name) for source in sources for name in source))


def _collect(meta: dict[str, Any], plan: dict[str, Any], events: list[dict[str, Any]]) -> _Run:
    events = [e for e in events if isinstance(e, dict) and isinstance(e.get("event"), str)]
    kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        kinds[e["event"]].append(e)
    started = kinds["run_started"][0] if kinds["run_started"] else {}
    finished = kinds["run_finished"][-1] if kinds["run_finished"] else None
    times = [_num(e.get("time"), 0.0) for e in events if _num(e.get("time"), 0.0) > 0]
    t0 = _num(started.get("time"), min(times, default=0.0))
    t_end = _num(finished.get("time"), t0) if finished else max(times, default=t0)
    cmds = _commands(events, t_end)
    t_end = max([t_end, *(c.end for c in cmds)])
    plan_hosts = plan.get("hosts")
    steps = [e.get("step") for e in events if isinstance(e.get("step"), str)]
    return _Run(
        run_id=str(meta.get("run_id") or started.get("run_id") or "?"),
        started=started,
        finished=finished,
        hosts=_ordered(
            list(plan_hosts) if isinstance(plan_hosts, dict) else [], [c.host for c in cmds]
        ),
        steps=_ordered(
            _names(started.get("steps")) or _names(plan.get("steps")), steps, [c.step for c in cmds]
        ),
        cmds=cmds,
        step_info=_step_info(events, t_end),
        t0=t0,
        t_end=t_end,
    )


def _step_info(events: list[dict[str, Any]], t_end: float) -> dict[str, _Step]:
    """Steps by name, from their ``step_started``/``step_finished`` pairs; a start without
    its finish (the controller was killed) runs until the journal ends."""
    steps: dict[str, _Step] = defaultdict(_Step)
    running: dict[str, float] = {}
    for e in events:
        if e["event"] not in ("step_started", "step_finished"):
            continue
        name, at = _text(e.get("step")), _num(e.get("time"), t_end)
        if e["event"] == "step_started":
            running[name] = at
            continue
        step = steps[name]
        step.status = _text(e.get("status")) or "finished"
        step.seconds = (step.seconds or 0.0) + _num(e.get("duration"), 0.0)
        if name in running:
            step.spans.append((running.pop(name), at))
    for name, at in running.items():
        step = steps[name]
        step.status = "incomplete"
        step.seconds = (step.seconds or 0.0) + max(0.0, t_end - at)
        step.spans.append((at, t_end))
    return dict(steps)


def _commands(events: list[dict[str, Any]], t_end: float) -> list[_Cmd]:
    """Results in journal order, then the starts no result answered (first in, first out:
    a step may run on a host more than once, as a group's inner steps will)."""
    pending: dict[tuple[str, str], deque[float]] = defaultdict(deque)
    cmds: list[_Cmd] = []
    for e in events:
        key = (_text(e.get("host")), _text(e.get("step")))
        at = _num(e.get("time"), t_end)
        if e["event"] == "command_started":
            pending[key].append(at)
        elif e["event"] == "command_finished":
            if pending[key]:
                pending[key].popleft()
            status = e["status"] if e.get("status") in STATUSES else UNKNOWN
            start = _num(e.get("started"), at)
            end = max(start, _num(e.get("finished"), at))
            if status == "rescued":  # it replaces the failure it rescued (its times too)
                _drop_failure(cmds, key)
            cmds.append(_Cmd(key[0], key[1], status, start, end, e))
    for (host, step), starts in pending.items():
        cmds.extend(_Cmd(host, step, UNKNOWN, at, max(at, t_end)) for at in starts)
    return cmds


def _drop_failure(cmds: list[_Cmd], key: tuple[str, str]) -> None:
    for i in range(len(cmds) - 1, -1, -1):
        if (cmds[i].host, cmds[i].step) == key and cmds[i].status in FAILURES:
            del cmds[i]
            return


# -- the page ----------------------------------------------------------------------------------


def render_report(meta: dict[str, Any], plan: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The run as one HTML document. Pure: the three journal files, parsed, in; text out.

    The journal is already masked, so nothing is masked again here.
    """
    run = _collect(meta, plan, events)
    groups = _failure_groups(run)
    name = meta.get("runbook") or run.started.get("runbook") or plan.get("runbook") or "runbook"
    css, js = _asset("report.css"), _asset("report.js")
    csp = (
        f"default-src 'none'; style-src '{_sha256(css)}'; script-src '{_sha256(js)}'; "
        "base-uri 'none'; form-action 'none'"
    )
    body = "\n".join(
        [
            f"<h1>{_h(name)} <small>run {_h(run.run_id)}</small></h1>",
            _summary(run, meta),
            _TIMELINE,
            _steps_table(run),
            _hosts_table(run),
            _failures(run, groups),
        ]
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>runbook report · {_h(name)} · {_h(run.run_id)}</title>\n"
        f"<style>{css}</style>\n</head>\n<body>\n{body}\n"
        f'<script type="application/json" id="report-data">{_script_json(_timeline(run, groups))}'
        f"</script>\n<script>{js}</script>\n</body>\n</html>\n"
    )
    # A lone surrogate (a hand-edited journal) cannot be written as UTF-8: show U+FFFD's
    # stand-in "?" rather than fail.
    return page.encode("utf-8", "replace").decode("utf-8")


_TIMELINE = """<section id="timeline">
<h2>Timeline</h2>
<div class="tl-tools">
<span id="legend"></span>
<label><input type="checkbox" id="only-problems"> only hosts with problems</label>
<span class="zoom">zoom <button type="button" data-zoom="1">1×</button>\
<button type="button" data-zoom="4">4×</button><button type="button" data-zoom="16">16×</button>\
</span>
</div>
<div id="tl" class="tl"></div>
<noscript><p>The timeline needs JavaScript; the tables below do not.</p></noscript>
<div id="tip" class="tip" hidden></div>
</section>"""


def _h(value: Any) -> str:
    """Journal text, escaped for HTML text and attribute values alike."""
    return html.escape(_text(value), quote=True)


@functools.cache
def _asset(name: str) -> str:
    return resources.files("runbook.journal").joinpath("assets", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _script_json(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment in it; JSON.parse
    reads the escapes back as the same characters."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = printable_json(text)
    for char, escape in _SCRIPT_UNSAFE.items():
        text = text.replace(char, escape)
    return text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _pill(status: str, text: str | None = None) -> str:
    label = text if text is not None else ("unknown outcome" if status == UNKNOWN else status)
    return f'<span class="pill s-{_h(status)}">{_h(label)}</span>'


def _run_status(run: _Run) -> tuple[str, str]:
    """(label, colour class) of the run."""
    if run.finished is None:
        return "incomplete", UNKNOWN
    status = _text(run.finished.get("status"))
    return status, {"completed": "ok", "halted": "failed"}.get(status, "cancelled")


def _summary(run: _Run, meta: dict[str, Any]) -> str:
    f = run.finished or {}
    label, colour = _run_status(run)
    counts = Counter(c.status for c in run.cmds)
    started = meta.get("started")
    if not isinstance(started, str):
        try:
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.t0))
        except (OverflowError, OSError, ValueError):
            started = "—"
    duration = _num(f.get("duration"), run.t_end - run.t0)
    rows = [
        ("Status", _pill(colour, label)),
        ("Exit code", _h(f.get("exit_code", "—"))),
        ("Started", _h(started)),
        (
            "Duration",
            _h(_duration(duration) + ("" if run.finished else " (until the journal ends)")),
        ),
        ("Hosts", str(len(run.hosts))),
        ("Steps", str(len(run.steps))),
        (
            "Commands",
            " ".join(_pill(s, f"{counts[s]} {s}") for s in (*STATUSES, UNKNOWN) if counts[s])
            or "none",
        ),
        ("Source", _h(meta.get("source") or run.started.get("source") or "—")),
    ]
    changed = sum(1 for c in run.cmds if c.event.get("changed") is True)
    if changed:
        rows.append(("Changed", str(changed)))
    if f.get("halted"):
        rows.append(("Halted", _h(f["halted"])))
    if _names(f.get("steps_not_run")):
        rows.append(("Steps not run", _h(", ".join(map(_text, _names(f["steps_not_run"]))))))
    if meta.get("resumes"):
        rows.append(("Resumes", _h(meta["resumes"])))
    rows += _review_rows(meta)
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    warning = ""
    if run.finished is None:
        unknown = counts[UNKNOWN]
        warning = (
            '<p class="warning">This run is <b>incomplete</b>: its journal has no '
            "<code>run_finished</code> event (the controller was killed, or is still running)"
            + (
                f"; {unknown} command(s) started and have an <b>unknown outcome</b>"
                if unknown
                else ""
            )
            + ".</p>"
        )
    return f'<section id="summary">{warning}<dl class="summary">{items}</dl></section>'


def _review_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """Plan review (SPEC §12): who approved the saved plan, and the discovery run whose
    values it was checked against (or that this run is one)."""
    rows = []
    approvals = meta.get("approvals")
    if isinstance(approvals, dict):
        listed = approvals.get("approvers")
        approvers: list[Any] = listed if isinstance(listed, list) else []
        who = ", ".join(
            f"{_text(a.get('principal'))} ({_text(a.get('key'))})"
            for a in approvers
            if isinstance(a, dict)
        )
        rows.append(
            (
                "Approved by",
                _h(
                    f"{who or 'nobody'}: {_text(approvals.get('required'))} required, plan "
                    f"{_text(approvals.get('plan'))} {_text(approvals.get('sha256'))}"
                ),
            )
        )
    if meta.get("discovery_run"):
        rows.append(("Checked against", _h(f"discovery run {_text(meta['discovery_run'])}")))
    if meta.get("kind") == "discovery":
        rows.append(("Discovery", _h(f"the discover steps alone, for {_text(meta.get('for'))}")))
    return rows


def _count_cells(counts: Counter[str]) -> str:
    return "".join(
        f'<td class="n s-{s}">{counts[s]}</td>' if counts[s] else '<td class="n zero">·</td>'
        for s in (*STATUSES, UNKNOWN)
    )


def _count_heads() -> str:
    return "".join(
        f'<th class="n">{"unknown" if s == UNKNOWN else s}</th>' for s in (*STATUSES, UNKNOWN)
    )


def _steps_table(run: _Run) -> str:
    per_step: dict[str, Counter[str]] = defaultdict(Counter)
    groups: dict[str, str] = {}
    for c in run.cmds:
        per_step[c.step][c.status] += 1
        if isinstance(c.event.get("group"), str):
            groups[c.step] = _text(c.event["group"])
    rows = []
    for i, step in enumerate(run.steps, 1):
        info = run.step_info.get(step, _Step())
        group = f'<span class="group">{_h(groups[step])} › </span>' if step in groups else ""
        rows.append(
            f'<tr><td class="n">{i}</td><td class="step">{group}{_h(step)}</td>'
            f"<td>{_h(info.status)}</td>{_count_cells(per_step[step])}"
            f'<td class="n">{_h(_duration(info.seconds))}</td></tr>'
        )
    return (
        '<section id="steps"><h2>Steps</h2><table class="grid"><thead><tr><th class="n">#</th>'
        f'<th>step</th><th>status</th>{_count_heads()}<th class="n">duration</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _hosts_table(run: _Run) -> str:
    """Hosts with anything but ok, one row each; the all-ok hosts folded into one line
    (the recap's rule, SPEC section 7)."""
    per_host: dict[str, Counter[str]] = {h: Counter() for h in run.hosts}
    for c in run.cmds:
        per_host[c.host][c.status] += 1
    clean = {h for h, n in per_host.items() if n and set(n) <= {"ok"}}
    silent = [h for h, n in per_host.items() if not n]
    rows = [
        f'<tr><td class="host">{_h(h)}</td>{_count_cells(n)}</tr>'
        for h, n in per_host.items()
        if n and h not in clean
    ]
    table = (
        f'<table class="grid"><thead><tr><th>host</th>{_count_heads()}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else ""
    )
    note = f"<p>{len(clean)} host(s): every command ok.</p>" if clean else ""
    if silent:
        note += f"<p>No result in the journal for: {_h(', '.join(silent))}.</p>"
    return f'<section id="hosts"><h2>Hosts</h2>{table}{note}</section>'


_GroupKey = tuple[str, str, Any, str, str, str]


def _failure_groups(run: _Run) -> dict[_GroupKey, list[_Cmd]]:
    """Failed and unknown commands, those alike in step, status, rc, error and output
    together: 500 hosts failing the same way make one entry, not 500."""
    groups: dict[_GroupKey, list[_Cmd]] = {}
    for c in run.cmds:
        if c.status in FAILURES or c.status == UNKNOWN:
            e = c.event
            rc = e.get("rc") if isinstance(e.get("rc"), int) else None
            key = (
                c.step,
                c.status,
                rc,
                _text(e.get("error")),
                _text(e.get("stdout")),
                _text(e.get("stderr")),
            )
            groups.setdefault(key, []).append(c)
    return groups


def _failures(run: _Run, groups: dict[_GroupKey, list[_Cmd]]) -> str:
    order = {h: i for i, h in enumerate(run.hosts)}
    budget = [OUTPUT_BUDGET]
    parts = []
    for n, (key, cmds) in enumerate(groups.items()):
        step, status, rc = key[:3]
        hosts = sorted((c.host for c in cmds), key=order.__getitem__)
        shown = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")
        head = (
            f"{_pill(status)} <b>{_h(step)}</b>"
            + (f" · rc={rc}" if rc is not None else "")
            + f" · {len(hosts)} host(s): {_h(shown)}"
        )
        body = [f'<p class="hostlist">{_h(", ".join(hosts))}</p>'] if len(hosts) > 5 else []
        if status == UNKNOWN:
            body.append(
                f"<p>Started at +{_h(_duration(cmds[0].start - run.t0))}; the journal has no "
                "result (the controller stopped before it came back). <code>--resume</code> "
                "refuses to re-run it unless <code>--rerun-unknown</code>.</p>"
            )
        else:
            show = (
                f"runbook show {shlex.quote(run.run_id)} --host {shlex.quote(hosts[0])} "
                f"--step {shlex.quote(step)}"
            )
            body.append(_result_output(key, show, budget))
        opened = " open" if n < OPEN_FAILURES else ""
        parts.append(
            f'<details class="failure" id="f{n}"{opened}><summary>{head}</summary>'
            f"{''.join(body)}</details>"
        )
    if not parts:
        return '<section id="failures"><h2>Failed commands</h2><p>None.</p></section>'
    return f'<section id="failures"><h2>Failed commands</h2>{"".join(parts)}</section>'


def _result_output(key: _GroupKey, show: str, budget: list[int]) -> str:
    """Error, stdout and stderr of one failure entry, while the page's budget lasts."""
    error, stdout, stderr = key[3:]
    parts = [f'<p class="error">{_h(error)}</p>'] if error else []
    if budget[0] <= 0 and (stdout or stderr):
        parts.append(
            f'<p class="note">Output not shown: this page already holds {OUTPUT_BUDGET:,} '
            f"characters of output. The journal has it: <code>{_h(show)}</code></p>"
        )
        return "".join(parts)
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        parts.append(_stream(name, text, show))
        budget[0] -= min(len(text), OUTPUT_CAP)
    return "".join(parts)


def _stream(name: str, text: str, show: str) -> str:
    if not text:
        return f'<h4>{name}</h4><p class="empty">(empty)</p>'
    note = ""
    if len(text) > OUTPUT_CAP:
        note = (
            f'<p class="note">The first {len(text) - OUTPUT_CAP:,} characters are not shown; '
            f"the journal has them all: <code>{_h(show)}</code></p>"
        )
        text = text[-OUTPUT_CAP:]
    return f"<h4>{name}</h4>{note}<pre>{_h(text)}</pre>"


def _timeline(run: _Run, groups: dict[_GroupKey, list[_Cmd]]) -> dict[str, Any]:
    """The timeline's data, compact (500 hosts × 10 steps is 5,000 bars): times in ms from
    the run's start, hosts, steps and statuses as indexes, error texts listed once."""
    statuses = [*STATUSES, UNKNOWN]
    host_ix = {h: i for i, h in enumerate(run.hosts)}
    step_ix = {s: i for i, s in enumerate(run.steps)}
    status_ix = {s: i for i, s in enumerate(statuses)}
    failure_of = {id(c): n for n, cmds in enumerate(groups.values()) for c in cmds}
    strings: dict[str, int] = {}

    def ms(t: float) -> int:
        return round((t - run.t0) * 1000)

    rows = []
    for c in run.cmds:
        e = c.event
        error = _text(e.get("error"))
        row: list[Any] = [
            host_ix[c.host],
            step_ix[c.step],
            status_ix[c.status],
            ms(c.start),
            ms(c.end),
            e.get("rc") if isinstance(e.get("rc"), int) else None,
            e.get("attempts") if isinstance(e.get("attempts"), int) else None,
            strings.setdefault(error, len(strings)) if error else -1,
            round(_num(e.get("duration"), c.end - c.start) * 1000),
        ]
        extra: dict[str, Any] = {k: _plain(e[k]) for k in ("changed", "group", "batch") if k in e}
        if id(c) in failure_of:
            extra["f"] = failure_of[id(c)]
        if extra:
            row.append(extra)
        rows.append(row)
    return {
        "span": max(ms(run.t_end), 1),
        "hosts": run.hosts,
        "steps": run.steps,
        "stepSpans": sorted(
            (
                [step_ix[name], ms(start), ms(end)]
                for name, info in run.step_info.items()
                if name in step_ix
                for start, end in info.spans
            ),
            key=lambda span: (span[1], span[0]),
        ),
        "statuses": statuses,
        "strings": list(strings),
        "cmds": rows,
    }


def _plain(value: Any) -> Any:
    """A value for the hover details: JSON scalars as they are, anything else as text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _text(value)  # NaN and Infinity too: JSON.parse refuses them


# -- the CLI's entry point ---------------------------------------------------------------------


def write_report(run: RunRecord, out: Path) -> None:
    """Render a journaled run (read by the journal's one reader, ``load_run``) to ``out``.

    Raises ``JournalError`` when ``out`` cannot be written."""
    page = render_report(run.meta, run.plan(), [e.to_dict() for e in run.events])
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise JournalError(f"cannot write the report {out}: {exc.strerror}") from None
