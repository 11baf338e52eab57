"""Property-based tests: random documents, random bytes, random ``-e`` values, and values
that try to be code. They run the CLI in-process (``runbook.cli.main.main``): a subprocess per
example would take minutes. Example counts are modest so each property stays well under
20 s on two shared cores; raise them with ``HYPOTHESIS_PROFILE=thorough``.

The promises checked (SPEC §2-4, README "Templates" and "Environment"):

- whatever the document, ``plan`` ends with exit 0 or 2, never a traceback, and a 2 comes
  with one ``file:line:col: ...`` line per error;
- a variable's value reaches the command byte-exact, through ``env`` and through a
  ``| quote``-d template, whichever file it came from; a NUL byte is refused (exit 2)
  before anything runs;
- a value is data: ``{{ ... }}``, ``{% ... %}``, ``$(...)`` and backticks in it are
  neither rendered nor run.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

from runbook.cli.main import main
from tests.reliability.helpers import cli_env

settings.register_profile(
    "reliability",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # nothing written into the repository (.hypothesis/)
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile("thorough", parent=settings.get_profile("reliability"))
PROFILE = settings.get_profile(
    "thorough" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "reliability"
)
SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``runbook ARGS`` in this process → (exit code, stdout, stderr). Any exception other
    than SystemExit propagates: that is the traceback the tests forbid."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_clean_refusal_or_success(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code in (0, 2), (code, stderr)
    if code == 2:
        lines = stderr.splitlines()
        assert lines, "exit 2 without a message"
        assert all(line.strip() for line in lines), stderr


# -- random documents --------------------------------------------------------------------

TOP_KEYS = ["name", "description", "inventory", "hosts", "vars", "env", "secrets", "defaults"]
STEP_KEYS = [
    "name", "run", "hosts", "local", "env", "timeout", "serial", "on_failure",
    "max_failures", "retries", "delay", "until", "when", "run_once", "become",
    "become_user", "tags", "shell", "confirm",
]  # fmt: skip
HOST_KEYS = ["address", "port", "user", "identity_file", "connection", "vars", "hosts", "children"]
TRICKY_STRINGS = [
    "all", "localhost", "local", "{{ x }}", "{{ host.name }}", "{% if %}", "{{", "}}",
    "25%", "150%", "-1", "0", "~[", "a:&b", "a:!b", "web*", "$(touch MARKER)", "halt",
    "continue", "/bin/sh", "ssh", "", " ", "\t", "\n", "null", "~", "yes", "no", "1e400",
    "{{ 9**9 }}", "{{ range(10) | list }}", "{{ ''.__class__ }}", "&a", "*a", "!!python/none",
]  # fmt: skip

keys = st.one_of(
    st.sampled_from(TOP_KEYS + STEP_KEYS + HOST_KEYS + ["steps", "bogus", "ansible_host"]),
    st.text(min_size=1, max_size=8),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    st.sampled_from(TRICKY_STRINGS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
steps = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {"name": st.one_of(st.text(min_size=1, max_size=6), values), "run": values},
            optional={k: values for k in STEP_KEYS if k not in ("name", "run")},
        ),
        max_size=3,
    ),
    values,
)
documents = st.one_of(
    values,
    st.fixed_dictionaries(
        {"name": st.one_of(st.text(max_size=6), values), "steps": steps},
        optional={k: values for k in TOP_KEYS if k != "name"},
    ),
    st.builds(
        lambda base, extra: {**extra, **base},
        st.fixed_dictionaries({"name": st.just("n"), "steps": steps}),
        st.dictionaries(keys, values, max_size=3),
    ),
)


@pytest.fixture(scope="module")
def scratch() -> Path:
    with tempfile.TemporaryDirectory(prefix="runbook-props-") as d:
        yield Path(d)


@settings(PROFILE, max_examples=80 * SCALE)
@given(doc=documents)
def test_random_documents_never_crash_plan(doc: object, scratch: Path) -> None:
    path = scratch / "random.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    code, _, stderr = run_cli(["plan", str(path)])
    event(f"exit {code}")  # --hypothesis-show-statistics: both outcomes must occur
    assert_clean_refusal_or_success(code, stderr)
    assert not (scratch / "MARKER").exists()


VALID = b"""\
name: mutated
hosts:
  web: {hosts: {w1: {address: 10.0.0.1, port: 22}}, vars: {port: 80}}
vars: {x: 1}
env: {X: "{{ x }}"}
steps:
  - name: one
    hosts: web
    run: echo {{ x | quote }} {{ host.name }}
    serial: "50%"
    when: x == 1
  - name: two
    local: true
    run: |
      echo two
"""


@settings(PROFILE, max_examples=150 * SCALE)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(VALID)), st.integers(0, 3), st.binary(max_size=3)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_bytes_never_crash_plan(edits: list[tuple[int, int, bytes]], scratch: Path) -> None:
    data = bytearray(VALID)
    for at, drop, insert in edits:
        data[at : at + drop] = insert
    path = scratch / "mutated.yml"
    path.write_bytes(bytes(data))
    code, _, stderr = run_cli(["plan", str(path)])
    event(f"exit {code}")
    assert_clean_refusal_or_success(code, stderr)


# -- values: byte-exact, refused, never evaluated -----------------------------------------

INJECTIONS = [
    "{{ 7*7 }}", "{% if true %}yes{% endif %}", "{# c #}", "$(touch MARKER)",
    "`touch MARKER`", "'; touch MARKER; '", '"; touch MARKER; "', "${HOME}", "$HOME",
    "\\", "\\n", "\n", "\r\n", "%s", "%", "'", '"', " ", "--", "-e", "*", "~", "!",
    "{{ lookup('pipe', 'touch MARKER') }}", "{{ ''.__class__.__mro__ }}", "\x7f", "é",
    "\u2028", "\U0001f600", "\ufeff",
]  # fmt: skip

hostile_values = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.lists(st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=4)), max_size=6).map("".join),
)

EXACT_RUNBOOK = """\
name: values are data
{where}
env:
  V: "{{{{ v }}}}"
steps:
  - name: print
    hosts: localhost
    run: printf '%s' "$V" > {out}/env.out; printf '%s' {{{{ v | quote }}}} > {out}/tpl.out
"""


CHANNELS = ["runbook vars", "--vars-file", "-e @file", "-e", "YAML inventory"]


def _write_value(channel: str, value: str, d: Path) -> tuple[str, list[str]]:
    """Put ``v: value`` where ``channel`` says → (runbook header line, extra CLI args)."""
    dumped = yaml.safe_dump({"v": value}, allow_unicode=True)
    if channel == "runbook vars":
        data = yaml.safe_load(dumped)
        flow = yaml.safe_dump(data, allow_unicode=True, default_flow_style=True, width=10**9)
        return "vars: " + flow.strip(), []
    if channel in ("--vars-file", "-e @file"):
        (d / "vars.yml").write_text(dumped, encoding="utf-8")
        flag = "--vars-file" if channel == "--vars-file" else "-e"
        target = str(d / "vars.yml") if channel == "--vars-file" else "@" + str(d / "vars.yml")
        return "vars: {v: placeholder}", [flag, target]
    if channel == "-e":
        return "vars: {v: placeholder}", [f"--extra-vars=v={value}"]
    assert channel == "YAML inventory"
    inv = {
        "all": {"hosts": {"localhost": {"ansible_connection": "local", **yaml.safe_load(dumped)}}}
    }
    (d / "inv.yml").write_text(yaml.safe_dump(inv, allow_unicode=True), encoding="utf-8")
    return f"inventory: {d / 'inv.yml'}", []


@settings(PROFILE, max_examples=60 * SCALE)
@given(
    value=hostile_values,
    channel=st.sampled_from(CHANNELS),
)
def test_values_arrive_byte_exact_and_are_never_evaluated(value: str, channel: str) -> None:
    # A NUL in the rendered command itself is a known bug (bad_inputs/nul_in_run.yml);
    # here NUL is covered through env only (test_nul_in_env_is_refused_before_anything_runs).
    assume("\0" not in value)
    assume(yaml.safe_load(yaml.safe_dump({"v": value}, allow_unicode=True)) == {"v": value})
    if channel == "-e":  # "-e v=1" is the number 1: only values kept as written apply here
        assume(isinstance(extra_var_value(value), str))
    if channel == "YAML inventory":  # Jinja in an inventory value is a template (SPEC §8)
        assume(not any(m in value for m in ("{{", "{%", "{#")))
    with tempfile.TemporaryDirectory(prefix="runbook-exact-") as tmp:
        d = Path(tmp)
        where, extra = _write_value(channel, value, d)
        rb = d / "rb.yml"
        rb.write_text(EXACT_RUNBOOK.format(where=where, out=d), encoding="utf-8")
        cwd = os.getcwd()
        os.chdir(d)  # a $(touch MARKER) that ran would land here
        try:
            code, _, stderr = run_cli(
                ["apply", "--yes", "--journal", str(d / "j"), *extra, str(rb)]
            )
        finally:
            os.chdir(cwd)
        assert code == 0, stderr
        expected = value.encode("utf-8")
        assert (d / "env.out").read_bytes() == expected
        assert (d / "tpl.out").read_bytes() == expected
        assert not (d / "MARKER").exists()


@settings(PROFILE, max_examples=40 * SCALE)
@given(
    before=st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    after=st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    channel=st.sampled_from(CHANNELS),
)
def test_nul_in_env_is_refused_before_anything_runs(before: str, after: str, channel: str) -> None:
    value = before + "\0" + after
    with tempfile.TemporaryDirectory(prefix="runbook-nul-") as tmp:
        d = Path(tmp)
        where, extra = _write_value(channel, value, d)
        rb = d / "rb.yml"
        rb.write_text(
            f'name: nul\n{where}\nenv:\n  V: "{{{{ v }}}}"\nsteps:\n'
            f"  - name: first\n    hosts: localhost\n    run: touch {d}/MARKER\n"
            f"  - name: second\n    hosts: localhost\n    run: printf '%s' \"$V\"\n",
            encoding="utf-8",
        )
        code, _, stderr = run_cli(["apply", "--yes", "--journal", str(d / "j"), *extra, str(rb)])
        assert code == 2, stderr
        assert "NUL" in stderr and len(stderr.splitlines()) == 1, stderr
        assert not (d / "MARKER").exists()
        assert not (d / "j").exists()


@settings(PROFILE, max_examples=60 * SCALE)
@given(
    key=st.one_of(st.sampled_from(["v", "x", "host", "env", "step"]), st.text(max_size=6)),
    raw=st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
        st.sampled_from(["", "[1, 2", "{a: 1}", "&a x", "*a", "!!python/none", "0x1F", "1e400"]),
    ),
)
def test_random_extra_vars_never_crash(key: str, raw: str) -> None:
    with tempfile.TemporaryDirectory(prefix="runbook-e-") as tmp:
        d = Path(tmp)
        rb = d / "rb.yml"
        rb.write_text(
            'name: e\nvars: {v: default}\nenv:\n  V: "{{ v }}"\nsteps:\n'
            "  - name: s\n    hosts: localhost\n"
            f"    run: printf '%s' \"$V\" > {d}/env.out\n",
            encoding="utf-8",
        )
        args = ["apply", "--yes", "--journal", str(d / "j"), f"--extra-vars={key}={raw}", str(rb)]
        code, _, stderr = run_cli(args)
        event(f"exit {code}")
        assert_clean_refusal_or_success(code, stderr)
        if code == 0 and key == "v" and isinstance(extra_var_value(raw), str):
            # README: a -e value is text as written unless it is unambiguously a number,
            # a boolean or null; text arrives byte-exact.
            assert (d / "env.out").read_bytes() == raw.encode()


def extra_var_value(raw: str) -> object:
    """How runbook types a ``-e`` value (its own rule, so the byte check can apply)."""
    from runbook.prepare import scalar

    return scalar(raw)


# -- deterministic cases next to the properties ---------------------------------------------


def test_template_injection_through_every_channel_is_inert(tmp_path: Path) -> None:
    """The classic payloads, through -e (a real argv), a vars file and an inventory. Jinja
    in an inventory value is a template (it comes from the repository, SPEC §8): only the
    shell payloads go there, and a separate value shows it is rendered."""
    payload = (
        "{{ 7*7 }} {% if true %}T{% endif %} $(touch MARKER) `touch MARKER` '; touch MARKER; '"
    )
    shell_payload = "$(touch MARKER) `touch MARKER` '; touch MARKER; '"
    (tmp_path / "inv.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "w": shell_payload,
                            "t": "{{ 7*7 }}",
                        }
                    }
                }
            }
        )
    )
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({"u": payload}))
    (tmp_path / "rb.yml").write_text(
        'name: injection\ninventory: inv.yml\nenv:\n  V: "{{ v }}"\n  U: "{{ u }}"\n'
        '  W: "{{ w }}"\nsteps:\n  - name: s\n    hosts: localhost\n'
        '    run: printf \'%s|%s|%s|%s|%s\' "$V" "$U" "$W" {{ v | quote }} {{ t }} > out\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runbook", "apply", "--yes", "-e", f"v={payload}",
         "--vars-file", "vars.yml", "rb.yml"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text() == "|".join(
        [payload, payload, shell_payload, payload, "49"]
    )
    assert not (tmp_path / "MARKER").exists()
    plan = subprocess.run(
        [sys.executable, "-m", "runbook", "plan", "-e", f"v={payload}", "--vars-file",
         "vars.yml", "rb.yml"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert plan.returncode == 0 and "{{ 7*7 }}" in plan.stdout
    assert plan.stdout.count("49") == 1  # the inventory template only


def test_extra_var_with_invalid_utf8_bytes(tmp_path: Path) -> None:
    (tmp_path / "rb.yml").write_text(
        'name: bytes\nenv:\n  V: "{{ v }}"\nsteps:\n  - name: s\n    hosts: localhost\n'
        "    run: printf '%s' \"$V\" > out\n"
    )
    value = b"a\x80\xffb"
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"runbook", b"apply", b"--yes", b"-e", b"v=" + value,
         b"rb.yml"],
        cwd=tmp_path, env=cli_env(), capture_output=True, timeout=60,
    )  # fmt: skip
    stderr = proc.stderr.decode("utf-8", "replace")
    assert b"Traceback" not in proc.stderr, stderr
    if proc.returncode == 0:
        assert (tmp_path / "out").read_bytes() == value
    else:
        assert proc.returncode == 2 and len(stderr.splitlines()) == 1, stderr
        assert not (tmp_path / "out").exists()
