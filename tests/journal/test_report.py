"""``render_report`` on hand-made journals: structure, forward compatibility, escaping.

The page is parsed with ``html.parser`` (what a browser's tokenizer would see); the
browser itself runs in ``tests/e2e/test_report.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook.errors import JournalError
from runbook.journal import report
from runbook.journal.report import render_report, write_report
from runbook.journal.store import load_run
from runbook.text import printable
from tests.htmlpage import Page

T0 = 1_800_000_000.0
PAYLOADS = [
    "<script>document.title='pwned'</script>",
    '"><img src=x onerror="document.body.dataset.pwned=1">',
    "</script><script>window.pwned=1</script>",
    "<!-- <script>",
    "a\u2028b\u2029c",
    "amp &amp; lt &lt;",
]


class Journal:
    """Events as the runner writes them, with times that advance one second a command."""

    def __init__(
        self, steps: list[str], hosts: list[str], run_id: str = "20270115-080000-abc"
    ) -> None:
        self.run_id, self.steps, self.hosts, self.t = run_id, steps, hosts, T0
        self.events: list[dict[str, Any]] = []
        self.add(
            "run_started",
            runbook="Demo",
            source="demo.yml",
            digest="sha256:0",
            steps=steps,
            hosts=len(hosts),
            commands=len(steps) * len(hosts),
            forks=10,
        )

    def add(self, kind: str, **data: Any) -> dict[str, Any]:
        event = {"schema_version": 1, "event": kind, "time": self.t, "run_id": self.run_id, **data}
        self.events.append(event)
        return event

    def step(
        self, name: str, results: dict[str, dict[str, Any]] | None = None, status: str = "ok"
    ) -> None:
        """Run ``name`` on every host; ``results[host]`` overrides fields of that result."""
        started = self.t
        self.add(
            "step_started",
            step=name,
            index=self.steps.index(name),
            hosts=self.hosts,
            batches=1,
            on_failure="continue",
            max_failures=0,
        )
        for host in self.hosts:
            self.command(name, host, **(results or {}).get(host, {}))
        self.add(
            "step_finished",
            step=name,
            index=self.steps.index(name),
            status=status,
            counts={},
            duration=self.t - started,
        )

    def command(self, step: str, host: str, **fields: Any) -> None:
        self.add("command_started", step=step, host=host)
        start, self.t = self.t, self.t + 1
        result = {
            "step": step,
            "host": host,
            "status": "ok",
            "rc": 0,
            "stdout": "out\n",
            "stderr": "",
            "started": start,
            "finished": self.t,
            "duration": 1.0,
            "attempts": 1,
            "error": None,
        }
        self.add("command_finished", **{**result, **fields})

    def finish(self, status: str = "completed", exit_code: int = 0) -> None:
        self.add(
            "run_finished",
            status=status,
            exit_code=exit_code,
            halted=None,
            counts={},
            duration=self.t - T0,
            steps_not_run=[],
        )

    def render(self, meta: dict[str, Any] | None = None) -> str:
        return render_report(meta or {"run_id": self.run_id, "runbook": "Demo"}, {}, self.events)


def simple(fail: dict[str, dict[str, Any]] | None = None) -> Journal:
    j = Journal(["Prepare", "Deploy"], ["web1", "web2", "db1"])
    j.step("Prepare")
    j.step("Deploy", fail, status="tolerated" if fail else "ok")
    j.finish()
    return j


def test_a_finished_run_shows_summary_hosts_steps_and_one_bar_per_command() -> None:
    page = Page(simple({"db1": {"status": "failed", "rc": 3, "error": "exit code 3"}}).render())
    data = page.data()
    assert data["hosts"] == ["web1", "web2", "db1"]
    assert data["steps"] == ["Prepare", "Deploy"]
    assert len(data["cmds"]) == 6
    statuses = [data["statuses"][c[2]] for c in data["cmds"]]
    assert statuses.count("failed") == 1 and statuses.count("ok") == 5
    text = page.all_text
    for word in ("Demo", "20270115-080000-abc", "completed", "Prepare", "Deploy", "db1"):
        assert word in text
    assert "5 ok" in text and "1 failed" in text
    assert "incomplete" not in text


def test_failed_output_is_shown_and_identical_failures_are_grouped() -> None:
    boom = {"status": "failed", "rc": 3, "error": "exit code 3", "stderr": "disk full\n"}
    page = Page(simple({"web1": boom, "web2": boom, "db1": {**boom, "stderr": "other\n"}}).render())
    failures = [a for a in page.named("details") if "failure" in (a.get("class") or "")]
    assert len(failures) == 2  # web1+web2 share one entry, db1 has its own output
    assert "disk full" in page.all_text and "other" in page.all_text
    assert "2 host(s): web1, web2" in page.all_text
    # each failed bar links to its entry in the failures section
    links = [c[9]["f"] for c in page.data()["cmds"] if len(c) > 9]
    assert links == [0, 0, 1]


def test_long_output_keeps_its_end_and_says_the_journal_has_the_rest() -> None:
    long = "".join(f"line {i}\n" for i in range(5000))
    j = simple({"web1": {"status": "failed", "rc": 1, "stdout": long}})
    text = Page(j.render()).all_text
    assert "line 4999" in text and "line 0\n" not in text
    assert f"The first {len(long) - report.OUTPUT_CAP:,} characters are not shown" in text
    assert "runbook show 20270115-080000-abc --host web1 --step Deploy" in text


def test_past_the_page_budget_output_is_left_to_the_journal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "OUTPUT_BUDGET", 20)
    j = simple(
        {
            h: {"status": "failed", "rc": 1, "stdout": f"{h} says " + "x" * 30}
            for h in ("web1", "web2", "db1")
        }
    )
    text = Page(j.render()).all_text
    assert "web1 says" in text  # the first entry spends the budget
    assert "web2 says" not in text and "db1 says" not in text
    assert text.count("Output not shown") == 2
    assert "runbook show 20270115-080000-abc --host db1 --step Deploy" in text


def test_a_run_without_run_finished_is_incomplete() -> None:
    j = Journal(["Prepare", "Deploy"], ["web1", "web2"])
    j.step("Prepare")
    page = Page(j.render())
    text = page.all_text
    assert "incomplete" in text
    assert "until the journal ends" in text
    # Deploy never started: listed, not run, and without a band on the timeline
    assert "not run" in text
    assert [span[0] for span in page.data()["stepSpans"]] == [0]


def test_a_command_that_started_without_a_result_has_an_unknown_outcome() -> None:
    j = Journal(["Deploy"], ["web1", "web2"])
    j.add(
        "step_started",
        step="Deploy",
        index=0,
        hosts=["web1", "web2"],
        batches=1,
        on_failure="halt",
        max_failures=0,
    )
    j.command("Deploy", "web1")
    j.add("command_started", step="Deploy", host="web2")
    j.t += 5  # the controller is killed 5 s later
    j.add("some_future_event")
    page = Page(j.render())
    data = page.data()
    unknown = [c for c in data["cmds"] if data["statuses"][c[2]] == "unknown"]
    assert len(unknown) == 1
    host, _, _, start, end = unknown[0][:5]
    assert data["hosts"][host] == "web2"
    assert end - start == 5000  # drawn until the journal ends
    text = page.all_text
    assert "1 command(s) started and have an unknown outcome" in text
    assert "unknown outcome" in text and "--rerun-unknown" in text


def test_a_step_that_ran_twice_on_a_host_matches_results_to_starts_in_order() -> None:
    j = Journal(["Inner"], ["web1"])
    j.command("Inner", "web1", batch=1)
    j.add("command_started", step="Inner", host="web1")
    data = Page(j.render()).data()
    assert [data["statuses"][c[2]] for c in data["cmds"]] == ["ok", "unknown"]


def test_a_step_run_once_per_batch_has_a_band_per_batch_and_its_total_duration() -> None:
    j = Journal(["Restart"], ["b1", "b2"])
    for host in ("b1", "b2"):
        j.add(
            "step_started",
            step="Restart",
            index=0,
            hosts=[host],
            batches=1,
            on_failure="halt",
            max_failures=0,
        )
        j.command("Restart", host, group="Brokers", batch=int(host[1]))
        j.add("step_finished", step="Restart", index=0, status="ok", counts={}, duration=1.0)
        j.t += 1
    j.finish()
    page = Page(j.render())
    assert page.data()["stepSpans"] == [[0, 0, 1000], [0, 2000, 3000]]
    assert "2.00 s" in page.all_text  # the steps table sums both runs


def test_unknown_event_kinds_and_fields_are_ignored() -> None:
    plain = simple()
    noisy = simple()
    extra: list[Any] = [
        {
            "event": "command_output",
            "time": T0 + 1,
            "step": "Deploy",
            "host": "web1",
            "stream": "stdout",
            "data": "chunk",
        },
        {
            "event": "registered",
            "time": T0 + 2,
            "step": "Deploy",
            "host": "web1",
            "name": "x",
            "value": {"rc": 0},
        },
        {"event": "a_kind_from_2030", "time": T0 + 3, "shape": [1, {"x": None}]},
        {"no_event_key": True},
        "not even an object",
        42,
    ]
    noisy.events[3:3] = extra
    for e in noisy.events:
        if isinstance(e, dict):
            e.setdefault("new_field", {"nested": [1, 2]})
    assert Page(noisy.render()).data() == Page(plain.render()).data()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
KINDS = [
    "run_started",
    "step_started",
    "command_started",
    "command_finished",
    "step_finished",
    "run_finished",
    "command_output",
    "registered",
    "batch_started",
    "new_kind",
]
FIELDS = [
    "time",
    "step",
    "host",
    "status",
    "rc",
    "stdout",
    "stderr",
    "started",
    "finished",
    "duration",
    "attempts",
    "error",
    "steps",
    "hosts",
    "counts",
    "exit_code",
    "halted",
    "steps_not_run",
    "changed",
    "group",
    "batch",
    "runbook",
    "run_id",
]
EVENT = st.builds(
    lambda kind, fields: {"event": kind, **fields},
    st.sampled_from(KINDS),
    st.dictionaries(
        st.sampled_from(FIELDS), JSON | st.sampled_from(["ok", "failed", "web1"]), max_size=8
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["run_id", "runbook", "started", "source", "resumes"]), JSON),
    st.dictionaries(st.sampled_from(["hosts", "steps", "runbook"]), JSON),
    st.lists(EVENT | JSON, max_size=12),
)
def test_any_journal_renders_as_one_page(meta: Any, plan: Any, events: Any) -> None:
    """Whatever a damaged or future journal holds, the page renders and stays one page."""
    page = Page(render_report(meta, plan, events))
    assert len(page.named("script")) == 2
    data = page.data()
    assert len(data["cmds"]) <= len(events)
    for c in data["cmds"]:
        assert 0 <= c[0] < len(data["hosts"]) and 0 <= c[1] < len(data["steps"])


def test_changed_group_and_batch_reach_the_hover_details() -> None:
    j = Journal(["Ship config"], ["web1", "web2"])
    j.command("Ship config", "web1", changed=True, group="Rolling", batch=1)
    j.command("Ship config", "web2", changed=False, group="Rolling", batch=2)
    j.finish()
    page = Page(j.render())
    extras = [c[9] for c in page.data()["cmds"]]
    assert extras == [
        {"changed": True, "group": "Rolling", "batch": 1},
        {"changed": False, "group": "Rolling", "batch": 2},
    ]
    assert "Changed" in page.all_text  # one command changed something
    assert "Rolling › " in page.all_text  # the steps table names the group


def test_nan_and_infinity_in_the_journal_do_not_break_json_parse() -> None:
    j = Journal(["Ship config"], ["web1"])
    j.command("Ship config", "web1", batch=float("nan"), changed=float("inf"), rc=None)
    j.events[-1]["started"] = float("-inf")
    (row,) = Page(j.render()).data()["cmds"]  # strict parsing, as JSON.parse
    assert row[9] == {"batch": "nan", "changed": "inf"}


def test_journal_strings_are_text_everywhere_never_markup() -> None:
    evil = PAYLOADS
    j = Journal([evil[0], evil[1]], [evil[2], "web1"], run_id=evil[3])
    j.step(
        evil[0],
        {
            evil[2]: {
                "status": "failed",
                "rc": 1,
                "stdout": "\n".join(evil),
                "stderr": evil[1],
                "error": evil[0],
            }
        },
    )
    j.step(evil[1], {"web1": {"status": "timed_out", "rc": None, "error": evil[2]}})
    j.finish()
    html = j.render({"run_id": evil[3], "runbook": evil[1], "source": evil[2]})
    page = Page(html)
    assert [t for t, _ in page.tags if t in ("img", "iframe", "object", "embed")] == []
    assert len(page.named("script")) == 2  # the data and the page's own script
    for _, attrs in page.tags:
        assert not [name for name in attrs if name.startswith("on")], attrs
    # every payload survives as text, in the HTML and in the JSON alike (U+2028/2029 shown
    # as escapes, as every surface shows them)
    for p in evil:
        assert printable(p) in page.all_text
    data = page.data()
    assert data["steps"] == [evil[0], evil[1]]
    assert data["hosts"][0] == evil[2]
    assert evil[0] in data["strings"]
    assert page.all_text.count(evil[0]) >= 3  # title, summary, steps, failures


def test_the_json_cannot_break_out_of_its_script_element() -> None:
    body = report._script_json({"s": "</script><!--\u2028\u2029&"})
    assert not set("<>&\u2028\u2029") & set(body)
    assert json.loads(body) == {"s": "</script><!--\u2028\u2029&"}


def test_controls_and_bidi_overrides_are_shown_escaped() -> None:
    j = simple(
        {"web1": {"status": "failed", "rc": 1, "stdout": "\x1b[31mred\x1b[0m\r\nok\rX\u202e!"}}
    )
    text = Page(j.render()).all_text
    assert "\\e[31mred\\e[0m\\r\nok\\rX\\u202e!" in text
    assert "\x1b" not in text and "\u202e" not in text


def test_a_lone_surrogate_does_not_break_the_page() -> None:
    j = simple({"web1": {"status": "failed", "rc": 1, "stdout": "bad \ud800 char"}})
    html = j.render()
    html.encode("utf-8")  # would raise on a lone surrogate
    assert "bad \\ud800 char" in html  # shown as an escape, as every surface shows it


def test_the_page_loads_nothing_and_allows_only_its_own_style_and_script() -> None:
    page = Page(simple().render())
    csp = next(
        a["content"] for a in page.named("meta") if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert csp is not None
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    code = next(b for a, b in page.scripts if "type" not in a)
    assert directives["script-src"] == sha(code)
    assert directives["style-src"] == sha("".join(page.styles))
    for _, attrs in page.tags:
        assert not {"src", "href", "srcset", "action", "poster", "style"} & set(attrs), attrs
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css
    for needle in (
        "fetch(",
        "XMLHttpRequest",
        "WebSocket",
        "import(",
        ".src",
        ".href",
        "innerHTML",
    ):
        assert needle not in code


def test_size_stays_reasonable_at_500_hosts() -> None:
    hosts = [f"web{i:03d}.example.internal" for i in range(500)]
    steps = [f"Step {i}: do something to the fleet" for i in range(10)]
    j = Journal(steps, hosts)
    for i, s in enumerate(steps):
        j.step(s, {h: {"status": "failed", "rc": 1, "error": "exit code 1"} for h in hosts[i::7]})
    j.finish()
    size = len(j.render().encode())
    assert size < 1_000_000, size  # measured ~0.4 MB: 5,000 bars as compact JSON rows


def write_journal(run_dir: Path, events: list[Any], *, torn: str = "") -> None:
    run_dir.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"run_id": run_dir.name, "runbook": "Demo"}))
    (run_dir / "plan.json").write_text(json.dumps({"hosts": {"web1": {}}, "steps": []}))
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    (run_dir / "events.jsonl").write_text(lines + torn, encoding="utf-8")


def test_write_report_reads_the_journal_and_writes_the_page(tmp_path: Path) -> None:
    j = simple({"web1": {"status": "failed", "rc": 1, "stdout": "x\u2028y\n"}})
    write_journal(tmp_path / "run", j.events, torn='{"event": "command_fin')
    out = tmp_path / "report.html"
    write_report(load_run(tmp_path / "run"), out)
    page = Page(out.read_text(encoding="utf-8"))
    assert len(page.data()["cmds"]) == 6  # U+2028 inside a line did not split it
    assert "x\\u2028y" in page.all_text  # shown escaped, as on every surface


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing-events", r"cannot read .*events\.jsonl"),
        ("bad-meta", r"meta\.json is not valid JSON"),
        ("list-plan", r"plan\.json is not a JSON object"),
        ("bad-line", r"events\.jsonl:2: not a JSON event"),
    ],
)
def test_write_report_says_what_is_wrong_with_the_journal(
    tmp_path: Path, breakage: str, message: str
) -> None:
    run = tmp_path / "run"
    write_journal(run, simple().events)
    if breakage == "missing-events":
        (run / "events.jsonl").unlink()
    elif breakage == "bad-meta":
        (run / "meta.json").write_text("{")
    elif breakage == "list-plan":
        (run / "plan.json").write_text("[]")
    else:
        text = (run / "events.jsonl").read_text().splitlines()
        text.insert(1, "garbage")
        (run / "events.jsonl").write_text("\n".join(text) + "\n")
    with pytest.raises(JournalError, match=message):
        write_report(load_run(run), tmp_path / "out.html")


def test_write_report_cannot_write_the_page(tmp_path: Path) -> None:
    write_journal(tmp_path / "run", simple().events)
    with pytest.raises(JournalError, match=re.escape("cannot write the report")):
        write_report(load_run(tmp_path / "run"), tmp_path / "no-such-dir" / "out.html")


def test_a_rescued_result_replaces_the_failure_it_rescued() -> None:
    j = Journal(["Deploy", "Restore"], ["web1", "web2"])
    j.step("Deploy", {"web2": {"status": "failed", "rc": 1, "error": "exit code 1"}})
    j.command("Restore", "web2")
    j.add(  # the runner's rescued result for the failed step (no start of its own)
        "command_finished", step="Deploy", host="web2", status="rescued", rc=1, stdout="",
        stderr="", started=T0 + 1, finished=T0 + 2, duration=1.0, attempts=1,
        error="exit code 1; rescued by 'Restore'",
    )  # fmt: skip
    j.finish()
    page = Page(j.render())
    data = page.data()
    statuses = sorted(data["statuses"][c[2]] for c in data["cmds"])
    assert statuses == ["ok", "ok", "rescued"]  # the failure is gone, replaced
    assert not [a for a in page.named("details") if "failure" in (a.get("class") or "")]
    assert "1 rescued" in page.all_text


def test_the_summary_says_who_approved_the_plan_and_its_discovery_run() -> None:
    meta = {
        "run_id": "20270115-080000-abc",
        "runbook": "Demo",
        "approvals": {
            "plan": "failover.plan.json",
            "sha256": "sha256:" + "ab" * 32,
            "required": 2,
            "approvers": [
                {"principal": "alice@example.com", "key": "ED25519 SHA256:AAA"},
                {"principal": "<b>bob</b>", "key": "ED25519 SHA256:BBB"},
            ],
        },
        "discovery_run": "20270115-075959-def",
    }
    page = Page(simple().render(meta))
    text = page.all_text
    assert "Approved by" in text
    assert "alice@example.com (ED25519 SHA256:AAA), <b>bob</b> (ED25519 SHA256:BBB)" in text
    assert "2 required, plan failover.plan.json sha256:" in text
    assert "discovery run 20270115-075959-def" in text
    assert "<b>bob</b>" not in simple().render(meta).replace("&lt;b&gt;bob&lt;/b&gt;", "")
