"""``runbook report`` in a real browser: a journal from a real ``apply``, its page opened
from ``file://`` in headless Chromium (SPEC section 7).

The CLI subcommand is being added separately; these tests go through ``write_report``,
the function it calls. Four Chromium launches in all, a few seconds.
"""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from runbook.journal.report import write_report
from runbook.journal.store import load_run
from runbook.text import printable
from tests.e2e.browser import DevTools, dump_dom, require_chromium, screenshot
from tests.e2e.helpers import journal_dirs, journal_events, runbook, start, wait_for
from tests.htmlpage import Page

HOSTILE = 'Hostile <output> & "friends"'
MARKER = "pwned-marker"
# Output that would run script or add markup if it reached the page unescaped, a line
# separator (breaks JS string literals) and bytes that are not UTF-8.
PAYLOAD = (
    b"<script>document.title='pwned'</script>\n"
    b'"><img src=x onerror="document.body.appendChild(document.createElement(\'pwned-marker\'))">\n'
    b"</script><script>document.body.appendChild(document.createElement('pwned-marker'))"
    b"</script>\n"
    b"line\xe2\x80\xa8separated\n"
    b"invalid utf-8: \xff\xfe\xc3(\n"
)
RUNBOOK = """\
name: "Report <check> & co"
hosts:
  web:
    hosts:
      web1: {connection: local}
      web2: {connection: local}
      web3: {connection: local}
  db:
    hosts:
      db1: {connection: local}
steps:
  - name: Greet
    hosts: all
    run: echo "hello from {{ host.name }}"
  - name: "Hostile <output> & \\"friends\\""
    hosts: web
    on_failure: continue
    run: cat PAYLOAD; cat PAYLOAD >&2; exit 3
  - name: Tolerated failure on db
    hosts: db
    on_failure: continue
    run: echo "disk full" >&2; exit 2
  - name: Wait a little
    hosts: all
    run: sleep 0.3
  - name: Done
    local: true
    run: echo done
"""
STEPS = ["Greet", HOSTILE, "Tolerated failure on db", "Wait a little", "Done"]
HOSTS = ["web1", "web2", "web3", "db1", "localhost"]


def run_dirs(base: Path) -> list[Path]:
    """The run journals under ``base`` (the journal root also holds run locks)."""
    return [p for p in journal_dirs(base) if p.is_dir()]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real run, its journal and its report page, shared by every check here."""
    require_chromium()
    base = tmp_path_factory.mktemp("report")
    payload = base / "payload.bin"
    payload.write_bytes(PAYLOAD)
    (base / "rb.yml").write_text(RUNBOOK.replace("PAYLOAD", str(payload)))
    done = runbook("apply", "--yes", "rb.yml", cwd=base)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(base)
    page = base / "report.html"
    write_report(load_run(run_dir), page)
    # split on "\n" only: the U+2028 in the output is raw inside the JSON lines
    lines = (run_dir / "events.jsonl").read_text(encoding="utf-8").split("\n")
    events = [json.loads(line) for line in lines if line]
    return {"page": page, "work": base, "events": events, "run_id": run_dir.name}


@pytest.fixture(scope="module")
def dom(report: dict[str, Any]) -> tuple[Page, list[str]]:
    """The page's DOM after its script ran (one Chromium launch), and what it requested."""
    text, requests = dump_dom(report["page"], report["work"])
    return Page(text), requests


def test_the_page_renders_every_host_step_and_command_and_requests_nothing(
    report: dict[str, Any], dom: tuple[Page, list[str]]
) -> None:
    page, requests = dom
    assert requests == []
    labels = [a.get("title") for a in page.tags_with_class("tl-label")]
    assert labels[1:] == HOSTS  # the first is the header's
    steps = [a.get("title") for a in page.tags_with_class("tl-step")]
    assert steps == STEPS
    bars = page.tags_with_class("bar")
    results = [e for e in report["events"] if e["event"] == "command_finished"]
    assert len(bars) == len(results) == 13
    expected = sorted(f"{e['host']} · {e['step']} · {e['status']}" for e in results)
    assert sorted(str(b["aria-label"]) for b in bars) == expected
    assert sum("s-failed" in str(b["class"]) for b in bars) == 4
    text = page.all_text
    assert report["run_id"] in text and "Report <check> & co" in text
    for step in STEPS:
        assert step in text  # the steps table, server-rendered


def test_hostile_output_is_text_and_runs_nothing(
    report: dict[str, Any], dom: tuple[Page, list[str]]
) -> None:
    page, _ = dom
    # had any payload run, the title would be 'pwned' and a marker element would exist
    assert "".join(page.titles) == f"runbook report · Report <check> & co · {report['run_id']}"
    assert [t for t, _ in page.tags if t in ("img", "output", MARKER)] == []
    assert len(page.named("script")) == 2
    text = page.all_text
    for line in PAYLOAD.decode("utf-8", "replace").split("\n"):
        assert printable(line) in text  # as every surface shows it
    assert "line\\u2028separated" in text  # an invisible separator, shown escaped
    assert "invalid utf-8: \ufffd\ufffd\ufffd(" in text
    assert "3 host(s): web1, web2, web3" in text  # one entry for the same output, in plan order


def test_the_screenshot_is_the_requested_size_and_not_blank(report: dict[str, Any]) -> None:
    from PIL import Image

    png = screenshot(report["page"], report["work"])
    image = Image.open(io.BytesIO(png.read_bytes()))
    assert image.format == "PNG" and image.size == (1400, 900)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 20, colours
    rgb = {c for _, c in colours}
    # the status colours of the CSS: ok bars and failed bars are on screen
    assert (0x2F, 0x9E, 0x5A) in rgb and (0xD7, 0x37, 0x3F) in rgb


def test_hovering_a_bar_shows_its_details_and_clicking_opens_its_output(
    report: dict[str, Any],
) -> None:
    browser = DevTools(report["page"], report["work"])
    try:
        browser.wait_for("document.readyState === 'complete' && !!document.querySelector('.bar')")
        x, y = browser.evaluate(
            """(() => {
              const bar = [...document.querySelectorAll('.bar.s-failed')]
                .find(b => b.getAttribute('aria-label').startsWith('web2 '));
              bar.scrollIntoView({block: 'center'});
              const r = bar.getBoundingClientRect();
              return [r.x + r.width / 2, r.y + r.height / 2];
            })()"""
        )
        browser.mouse("mouseMoved", x, y)
        hidden, tip = browser.evaluate("[tip.hidden, tip.innerText]")
        assert not hidden
        for line in (
            "host: web2",
            f"step: {HOSTILE}",
            "status: failed",
            "rc: 3",
            "attempts: 1",
            "error: exit code 3",
            "duration: ",
        ):
            assert line in tip, tip
        browser.mouse("mousePressed", x, y, button="left", clickCount=1)
        browser.mouse("mouseReleased", x, y, button="left", clickCount=1)
        assert browser.evaluate("[location.hash, document.getElementById('f0').open]") == [
            "#f0",
            True,
        ]
        browser.mouse("mouseMoved", 2, 2)
        assert browser.evaluate("tip.hidden") is True
        # the filter hides hosts whose every command was ok; zoom widens the tracks
        visible = """[...document.querySelectorAll('.tl-row:not(.tl-head)')]
            .filter(row => row.offsetParent !== null).map(row => row.firstChild.title)"""
        assert browser.evaluate(visible) == HOSTS
        browser.evaluate("document.getElementById('only-problems').click()")
        assert browser.evaluate(visible) == ["web1", "web2", "web3", "db1"]
        browser.evaluate("document.querySelector('[data-zoom=\"4\"]').click()")
        ratio = browser.evaluate("tl.scrollWidth / tl.clientWidth")
        assert 3.9 < ratio < 4.1, ratio
    finally:
        browser.close()


def test_a_page_that_fetches_is_caught(tmp_path: Path) -> None:
    """The no-request check above can fail: a page that loads an image is seen."""
    require_chromium()
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><title>x</title><img src="http://example.invalid/x.png">')
    _, requests = dump_dom(page, tmp_path)
    assert requests == ["http://example.invalid/x.png"]


KILLED = """\
name: Killed
hosts:
  nodes:
    hosts:
      n1: {connection: local}
      n2: {connection: local}
steps:
  - name: Quick
    hosts: nodes
    run: "true"
  - name: Long
    hosts: nodes
    run: sleep 30
"""


def test_a_killed_run_renders_incomplete_with_unknown_outcomes(tmp_path: Path) -> None:
    """SIGKILL mid-step: no run_finished, two starts without results (the run's watchdog
    ends the sleeps)."""
    require_chromium()
    (tmp_path / "rb.yml").write_text(KILLED)
    proc = start("apply", "--yes", "rb.yml", cwd=tmp_path)

    def long_started() -> int:
        runs = run_dirs(tmp_path)
        return sum(
            e["event"] == "command_started" and e["step"] == "Long"
            for e in (journal_events(runs[0]) if runs else [])
        )

    try:
        wait_for(lambda: long_started() == 2, what="both Long commands started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    (run_dir,) = run_dirs(tmp_path)
    out = tmp_path / "report.html"
    write_report(load_run(run_dir), out)
    dom, requests = dump_dom(out, tmp_path)
    page = Page(dom)
    assert requests == []
    bars = {str(b["aria-label"]): str(b["class"]) for b in page.tags_with_class("bar")}
    assert bars == {
        "n1 · Quick · ok": "bar s-ok",
        "n2 · Quick · ok": "bar s-ok",
        "n1 · Long · unknown": "bar s-unknown linked",
        "n2 · Long · unknown": "bar s-unknown linked",
    }
    text = page.all_text
    assert "This run is incomplete" in text
    assert "2 command(s) started and have an unknown outcome" in text


def test_the_report_command_writes_the_page_and_refuses_an_unknown_run(tmp_path: Path) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text(
        "name: cli report\nhosts:\n  g:\n    hosts:\n      r1: {connection: local}\n"
        "steps:\n  - name: hello\n    hosts: g\n    run: echo hi\n"
    )
    assert runbook("apply", "--yes", str(rb), cwd=tmp_path).returncode == 0
    (run_dir,) = journal_dirs(tmp_path)
    out = tmp_path / "page.html"
    made = runbook("report", run_dir.name, str(rb), "--out", str(out), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    page = Page(out.read_text(encoding="utf-8"))
    assert "r1" in json.dumps(page.data()) and "hello" in page.all_text
    missing = runbook("report", "20990101-000000-abcdef", str(rb), cwd=tmp_path)
    assert missing.returncode == 2 and "no run" in missing.stderr
