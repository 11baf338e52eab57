"""What a reviewer sees is what runs: no surface shows a raw control, bidi or zero-width
character (SPEC §6; issue 24).

``rm -rf /x #\\r    localhost  $ echo rotating logs`` in a command printed raw shows as
``echo rotating logs`` on a terminal; U+202E shows the rest of a line reversed; a
``prod\\u200b`` guard looks like ``prod``. Every surface — the plan (text and JSON), the
apply summary and prompt, the console (plain, verbose, live, JSON lines), the recap,
``show``, ``runs``, ``diff`` in every format, the HTML report and error messages — is fed
such text here, and must show it escaped. ``HIDDEN`` is written from the SPEC's list, not
from the code under test.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from runbook.text import printable, printable_json
from tests.e2e.helpers import events, journal_dirs, runbook, write
from tests.e2e.test_terminal import _run_on_pty

# SPEC §6: control characters (C0 but tab and newline, DEL, C1), bidi controls
# (U+202A–202E, U+2066–2069, U+200E/200F) and zero-width characters (U+200B–200D,
# U+2060, U+FEFF).
HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u200b-\u200d\u2060\ufeff]"
)
# Written as YAML double-quoted escapes: CR, ESC (a line erase), BEL, C1 CSI, bidi
# override and isolate, zero-width space, joiner, word joiner, BOM.
NASTY_YAML = r"\r\e[2K\a\x9b\u202e\u2066\u200b\u200d\u2060\uFEFF"
NASTY = "\r\x1b[2K\x07\x9b\u202e\u2066\u200b\u200d\u2060\ufeff"
SHOWN = r"\r\e[2K\x07\x9b\u202e\u2066\u200b\u200d\u2060\ufeff"


def clean(text: str, what: str) -> None:
    found = HIDDEN.search(text)
    assert found is None, f"{what} shows {found.group()!r} raw: {text[:2000]!r}"


def test_printable_escapes_every_character_the_spec_names() -> None:
    spec = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n"]
    spec += [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
    spec += ["\u200e", "\u200f", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
    for char in spec:
        shown = printable(f"a{char}b", multiline=False)
        assert char not in shown and shown.startswith("a\\") and shown.endswith("b"), shown
    assert printable("a\tb\nc") == "a\tb\nc"  # tabs and newlines are text
    assert printable("a\nb", multiline=False) == "a\\nb"  # a one-line field stays one line
    assert printable("rm -rf /x #\r$ echo ok") == "rm -rf /x #\\r$ echo ok"
    assert printable("é ü 日本 🎉") == "é ü 日本 🎉"  # ordinary text is untouched


def test_printable_json_means_the_same_and_hides_nothing() -> None:
    data = {"cmd": f"echo {NASTY} \U000e0041", "n": 1}
    text = printable_json(json.dumps(data, ensure_ascii=False))
    clean(text, "printable_json")
    assert json.loads(text) == data


RUNBOOK = f"""\
name: "surfaces {NASTY_YAML}"
hosts:
  web: [localhost]
steps:
  - name: "fails {NASTY_YAML}"
    hosts: web
    on_failure: continue
    env:
      NOTE: "env {NASTY_YAML}"
    run: "printf 'out {NASTY_YAML}\\n'; printf 'err {NASTY_YAML}' >&2; exit 3"
  - name: "until {NASTY_YAML}"
    hosts: web
    on_failure: continue
    run: "echo ok"
    until: "stdout == 'x{NASTY_YAML}'"
  - name: rotate
    hosts: web
    run: "true #\\r    localhost  $ echo rotating logs"
"""


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """One run of the runbook, with its plain, verbose and JSON consoles."""
    root = tmp_path_factory.mktemp("surfaces")
    rb = write(root / "rb.yml", RUNBOOK)
    out = {}
    for name, args in (("plain", []), ("verbose", ["-v"]), ("json", ["--output", "json"])):
        done = runbook("apply", "--yes", *args, str(rb), cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stderr == "", done.stderr
        out[name] = done.stdout
    return root, rb, out


def test_the_plan_shows_the_command_as_it_runs(tmp_path: Path) -> None:
    rb = write(tmp_path / "rb.yml", RUNBOOK)
    text = runbook("plan", str(rb))
    assert text.returncode == 0, text.stderr
    clean(text.stdout, "plan text")
    assert r"localhost  $ true #\r    localhost  $ echo rotating logs" in text.stdout
    assert f"fails {SHOWN}" in text.stdout and f"NOTE='env {SHOWN}'" in text.stdout
    expanded = runbook("plan", "--expand", str(rb))
    clean(expanded.stdout, "plan --expand")
    as_json = runbook("plan", "--format", "json", str(rb))
    clean(as_json.stdout, "plan JSON")
    data = json.loads(as_json.stdout)
    assert data["steps"][0]["name"] == f"fails {NASTY}"  # the same data, escaped
    saved = tmp_path / "plan.json"
    assert runbook("plan", "--out", str(saved), str(rb)).returncode == 0
    clean(saved.read_text(), "saved plan")


def test_every_console_shows_names_and_output_escaped(applied) -> None:
    _, _, out = applied
    for name, text in out.items():
        clean(text, f"apply console ({name})")
    assert f"fails {SHOWN}" in out["plain"]  # the step's line and the recap
    assert f"out {SHOWN}" in out["plain"] and f"err {SHOWN}" in out["plain"]
    assert f"until not met: stdout == 'x{SHOWN}'" in out["plain"]
    assert f"out {SHOWN}" in out["verbose"]
    started = [e for e in events(out["json"]) if e["event"] == "run_started"]
    assert started and started[0]["runbook"] == f"surfaces {NASTY}"  # the same data


def test_show_runs_and_report_show_the_journal_escaped(applied) -> None:
    root, rb, _ = applied
    run = journal_dirs(root)[0].name
    for args in (["show", run], ["show", run, "--host", "localhost"], ["runs"]):
        done = runbook(*args, cwd=root)
        assert done.returncode == 0, done.stderr
        clean(done.stdout, " ".join(args[:1]))
        assert SHOWN in done.stdout, done.stdout
    report = root / "report.html"
    done = runbook("report", run, "--out", str(report), cwd=root)
    assert done.returncode == 0, done.stderr
    page = report.read_text(encoding="utf-8")
    clean(page, "report")
    assert f"out {SHOWN}" in page


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_diff_shows_a_zero_width_guard_escaped(tmp_path: Path, fmt: str) -> None:
    """``when: env_name == "prod\\u200b"`` looks right and never matches."""
    old = write(
        tmp_path / "old.yml",
        "name: d\nhosts:\n  web: [localhost]\nvars: {env_name: prod}\nsteps:\n"
        '  - name: guard\n    hosts: web\n    when: env_name == "prod"\n    run: echo drop\n',
    )
    new = write(tmp_path / "new.yml", old.read_text().replace('"prod"', '"prod\u200b"'))
    done = runbook("diff", "--format", fmt, str(old), str(new))
    assert done.returncode == 1, done.stdout + done.stderr
    clean(done.stdout, f"diff {fmt}")
    assert "prod\\u200b" in done.stdout  # an escape in every format (JSON's own, too)
    if fmt == "json":  # ... and the same data
        assert "prod\u200b" in json.dumps(json.loads(done.stdout), ensure_ascii=False)


def test_an_error_quoting_host_text_is_escaped(tmp_path: Path) -> None:
    """An inventory script's stderr is folded into the error's one line."""
    script = write(
        tmp_path / "inv.py",
        f"#!{sys.executable}\nimport sys\n"
        "sys.stderr.write('boom \\x1b]0;PWNED\\x07\\u202e\\u200b\\r\\n')\nsys.exit(1)\n",
    )
    script.chmod(0o755)
    rb = write(
        tmp_path / "rb.yml",
        "name: e\ninventory: inv.py\nsteps:\n  - name: s\n    hosts: all\n    run: echo\n",
    )
    done = runbook("plan", str(rb))
    assert done.returncode == 2, done.stdout + done.stderr
    clean(done.stderr, "error message")
    assert len(done.stderr.splitlines()) == 1
    assert "boom \\e]0;PWNED\\x07\\u202e\\u200b" in done.stderr


def test_the_apply_summary_and_prompt_show_names_escaped(tmp_path: Path) -> None:
    """On a terminal: the plan summary, "Proceed?", then a step's ``confirm``."""
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: "prompt {NASTY_YAML}"
hosts:
  web: [localhost]
steps:
  - name: "first {NASTY_YAML}"
    hosts: web
    confirm: "really {NASTY_YAML}?"
    run: touch {tmp_path / "ran"}
""",
    )
    rc, out = _run_on_pty(["apply", str(rb)], ["y", "n"])
    assert rc == 1, out
    prompts = out[: out.index("Continue with")].replace("\r\n", "\n")  # the tty's own CR
    clean(prompts, "apply summary and prompt")
    assert f"prompt {SHOWN}" in prompts and f"1. first {SHOWN} (1 host)" in prompts
    assert f"really {SHOWN}?" in prompts
    assert not (tmp_path / "ran").exists()


def test_the_live_console_shows_step_names_escaped(tmp_path: Path) -> None:
    """The live view draws with escape sequences of its own; none of the step's."""
    rb = write(
        tmp_path / "rb.yml",
        f'name: live\nhosts:\n  web: [localhost]\nsteps:\n  - name: "slow {NASTY_YAML}"\n'
        "    hosts: web\n    run: sleep 0.5\n",
    )
    rc, out = _run_on_pty(["apply", "--yes", str(rb)], [])
    assert rc == 0, out
    for char in "\x07\x9b\u202e\u2066\u200b\u200d\u2060\ufeff":
        assert char not in out, repr(char)
    assert f"slow {SHOWN}" in out
