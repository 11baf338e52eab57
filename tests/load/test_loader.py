"""Input errors: exit code 2, one ``FILE:LINE:COL: ...`` line per problem, no traceback.

Each case runs the CLI on a fixture written into ``tmp_path``; the line numbers asserted
are the ones you can count in the fixture text. The table of cases goes through
``runbook.cli.main.main`` in-process (the function the console script calls: an exception
escaping it would fail the test just as a traceback would), so the table stays fast; the
cases where the process itself matters (a file that cannot be read or decoded, an alias
bomb, a hostile tag, a bad argument) also run as real subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from runbook.errors import LoadError, SchemaError
from runbook.load.loader import load_runbook
from tests.e2e.helpers import runbook as runbook_cli

HANG = 60


@dataclass
class Proc:
    returncode: int
    stdout: str
    stderr: str


def main_in_process(capsys, monkeypatch, cwd: Path, *args: str) -> Proc:
    from runbook.cli.main import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return Proc(rc, out, err)


def write(tmp_path: Path, text: str, name: str = "rb.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def assert_input_error(proc: Proc | subprocess.CompletedProcess[str], prefix: str, *needles: str):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith(prefix), first
    for needle in needles:
        assert needle in first, (needle, first)
    return first


# (id, fixture, expected "file:line:col:" prefix, words the message must contain)
CASES = [
    (
        "yaml_syntax_bad_indent",
        """
        name: x
        steps:
          - name: a
            run: echo
           bad: 1
        """,
        "rb.yml:5:4: ",
        ["YAML syntax error"],
    ),
    (
        "yaml_syntax_tab",
        "name: x\nsteps:\n\t- name: a\n",
        "rb.yml:3:1: ",
        ["YAML syntax error", "\\t"],
    ),
    (
        "unknown_step_key",
        """
        name: x
        steps:
          - name: a
            run: echo
            bogus: 1
        """,
        "rb.yml:5:5: ",
        ["step 'a'", "unknown key 'bogus'"],
    ),
    (
        "unknown_top_level_key",
        """
        name: x
        stepz: []
        steps:
          - name: a
            run: echo
        """,
        "rb.yml:2:1: ",
        ["unknown key 'stepz'"],
    ),
    (
        "wrong_type_timeout",
        """
        name: x
        steps:
          - name: a
            run: echo
            timeout: soon
        """,
        "rb.yml:5:5: ",
        ["step 'a'", "timeout", "expected number", "soon"],
    ),
    (
        "wrong_type_steps_mapping",
        """
        name: x
        steps:
          a: {run: echo}
        """,
        "rb.yml:2:1: ",  # type errors point at the key, as for `timeout` above
        ["steps", "expected array", "got a mapping"],
    ),
    (
        "missing_run",
        """
        name: x
        steps:
          - name: a
            hosts: localhost
        """,
        "rb.yml:3:5: ",
        ["step 'a'", "'run' is required"],
    ),
    (
        "duplicate_step_name",
        """
        name: x
        steps:
          - name: a
            run: echo 1
          - name: a
            run: echo 2
        """,
        "rb.yml:5:5: ",
        ["step 'a'", "duplicate step name", "rb.yml:3:5"],
    ),
    (
        "duplicate_yaml_key",
        """
        name: x
        steps:
          - name: a
            run: echo 1
            run: echo 2
        """,
        "rb.yml:5:5: ",
        ["duplicate key 'run'"],
    ),
    (
        "duplicate_yaml_key_in_vars",
        """
        name: x
        vars:
          port: 1
          port: 2
        steps:
          - name: a
            hosts: localhost
            run: echo
        """,
        "rb.yml:4:3: ",
        ["duplicate key 'port'"],
    ),
    (
        "unknown_host_group",
        """
        name: x
        hosts:
          web: [localhost]
        steps:
          - name: a
            hosts: nosuch
            run: echo
        """,
        "rb.yml:6:5: ",
        ["step 'a'", "unknown host or group 'nosuch'", "web"],
    ),
    (
        "undefined_template_var",
        """
        name: x
        steps:
          - name: a
            hosts: localhost
            run: echo {{ data_dirr }}
        """,
        "rb.yml:5:5: ",
        ["step 'a'", "host 'localhost'", "'data_dirr' is undefined"],
    ),
    (
        "undefined_var_in_runbook_env",
        """
        name: x
        env:
          A: ok
          B: "{{ nope }}"
        steps:
          - name: a
            hosts: localhost
            run: echo
        """,
        "rb.yml:4:3: ",
        ["step 'a'", "host 'localhost'", "'nope' is undefined"],
    ),
    (
        "undefined_var_in_when",
        """
        name: x
        steps:
          - name: a
            hosts: localhost
            run: echo
            when: nope == 1
        """,
        "rb.yml:6:5: ",
        ["step 'a'", "'nope' is undefined"],
    ),
    (
        "template_syntax_in_block_scalar",
        """
        name: x
        steps:
          - name: a
            hosts: localhost
            run: |
              echo fine
              echo {{ oops
        """,
        "rb.yml:7:",
        ["template syntax"],
    ),
    (
        "python_object_tag",
        """
        name: x
        steps:
          - name: a
            run: !!python/object/apply:os.system ["touch pwned"]
        """,
        "rb.yml:4:10: ",
        ["unsupported YAML tag", "python/object"],
    ),
    (
        "serial_percent_out_of_range",
        """
        name: x
        steps:
          - name: a
            run: echo
            serial: "150%"
        """,
        "rb.yml:5:5: ",
        ["step 'a'", "serial"],
    ),
    (
        "not_a_mapping",
        "- just\n- a list\n",
        "rb.yml:1:1: ",
        ["YAML mapping"],
    ),
]


@pytest.mark.parametrize(
    "fixture,prefix,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_input_error_names_file_line_col(capsys, monkeypatch, tmp_path, fixture, prefix, needles):
    write(tmp_path, fixture)
    for command in ("validate", "plan"):
        proc = main_in_process(capsys, monkeypatch, tmp_path, command, "rb.yml")
        assert_input_error(proc, prefix, *needles)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "case", ["yaml_syntax_bad_indent", "python_object_tag", "duplicate_yaml_key"]
)
def test_input_error_as_a_subprocess(tmp_path, case):
    _, fixture, prefix, needles = next(c for c in CASES if c[0] == case)
    write(tmp_path, fixture)
    proc = runbook_cli("validate", "rb.yml", cwd=tmp_path)
    assert_input_error(proc, prefix, *needles)
    assert not (tmp_path / "pwned").exists()


def test_several_schema_errors_are_all_reported_in_file_order(capsys, monkeypatch, tmp_path):
    write(
        tmp_path,
        """
        name: x
        steps:
          - name: a
            run: echo
            zeta: 1
          - name: b
            run: echo
            alpha: 2
        """,
    )
    proc = main_in_process(capsys, monkeypatch, tmp_path, "validate", "rb.yml")
    assert_input_error(proc, "rb.yml:5:5: ", "unknown key 'zeta'")
    lines = proc.stderr.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("rb.yml:8:5: ") and "unknown key 'alpha'" in lines[1]


def test_bad_extra_var_without_equals(tmp_path):
    write(
        tmp_path,
        """
        name: x
        steps:
          - name: a
            hosts: localhost
            run: echo
        """,
    )
    proc = runbook_cli("validate", "rb.yml", "-e", "novalue", cwd=tmp_path)
    # A command-line argument has no file position; the message names the argument.
    assert_input_error(proc, "-e 'novalue'", "KEY=VALUE")


def test_missing_file(tmp_path):
    proc = runbook_cli("validate", "nope.yml", cwd=tmp_path)
    assert_input_error(proc, "nope.yml: ", "cannot read", "No such file")


def test_missing_vars_file(capsys, monkeypatch, tmp_path):
    write(tmp_path, "name: x\nsteps:\n  - name: a\n    hosts: localhost\n    run: echo\n")
    proc = main_in_process(
        capsys, monkeypatch, tmp_path, "validate", "rb.yml", "--vars-file", "gone.yml"
    )
    assert_input_error(proc, "gone.yml: ", "cannot read")


def test_non_utf8_file_names_the_line(tmp_path):
    raw = b"name: x\nsteps:\n  - name: a\n    run: echo caf\xe9\n"
    (tmp_path / "rb.yml").write_bytes(raw)
    proc = runbook_cli("validate", "rb.yml", cwd=tmp_path)
    assert_input_error(proc, "rb.yml:4:", "UTF-8", "0xe9")


def _billion_laughs(levels: int = 9) -> str:
    lines = [
        "name: x",
        "vars:",
        '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for i in range(1, levels + 1):
        lines.append(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    lines += ["steps:", "  - name: a", "    hosts: localhost", "    run: echo"]
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_quickly(tmp_path):
    (tmp_path / "rb.yml").write_text(_billion_laughs(), encoding="utf-8")
    proc = runbook_cli("validate", "rb.yml", cwd=tmp_path)  # HANG bounds time and memory
    first = assert_input_error(proc, "rb.yml:", "too large")
    # The node where the limit tripped is somewhere inside the anchors (lines 3..12).
    line = int(first.split(":")[1])
    assert 3 <= line <= 12, first


@pytest.mark.parametrize("depth", [150, 990])
@pytest.mark.parametrize("alias", [False, True], ids=["plain", "with-an-alias"])
def test_deep_nesting_is_an_input_error_whichever_loader_reads_it(tmp_path, depth, alias):
    """An alias sends a document to PyYAML's recursive pure-Python composer, as libyaml's
    own nesting limit (PyYAML 6.0.4's wheels) does; 990 levels there used to be a
    RecursionError (exit 70). Either way: exit 2 at the first level past the limit."""
    nested = "[" * depth + "1" + "]" * depth
    extra = "  a: &a 1\n  b: *a\n" if alias else ""
    (tmp_path / "rb.yml").write_text(
        f"name: x\nvars:\n{extra}  deep: {nested}\nsteps:\n  - name: s\n    run: echo\n",
        encoding="utf-8",
    )
    proc = runbook_cli("validate", "rb.yml", cwd=tmp_path)
    line = 5 if alias else 3
    assert_input_error(proc, f"rb.yml:{line}:108: ", "too deeply nested")


def test_small_aliases_are_fine(capsys, monkeypatch, tmp_path):
    write(
        tmp_path,
        """
        name: x
        vars:
          base: &base {port: 1}
          copy: *base
        defaults: &d {timeout: 5}
        steps:
          - name: a
            hosts: localhost
            run: echo {{ copy.port }}
        """,
    )
    proc = main_in_process(capsys, monkeypatch, tmp_path, "validate", "rb.yml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "rb.yml: ok (1 step, 1 host, 1 command)\n"


def test_validate_ok(tmp_path):
    write(
        tmp_path,
        """
        name: fine
        hosts:
          web: {hosts: {w1: {connection: local}, w2: {connection: local}}}
        steps:
          - name: a
            hosts: web
            run: echo {{ host.name }}
          - name: b
            local: true
            run: echo done
        """,
    )
    proc = runbook_cli("validate", "rb.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "rb.yml: ok (2 steps, 3 hosts, 3 commands)\n"
    assert proc.stderr == ""


# -- the Python API raises the same errors, with structured fields ----------------------


def test_api_schema_error_carries_position_and_step(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        steps:
          - name: first
            run: echo
            on_failure: explode
        """,
    )
    with pytest.raises(SchemaError) as info:
        load_runbook(str(path))
    err = info.value
    assert (err.position.line, err.position.col, err.step) == (5, 5, "first")
    assert "'explode' is not one of: halt, continue" in err.message


def test_api_load_error_for_duplicate_key(tmp_path):
    path = write(tmp_path, "name: x\nname: y\nsteps: []\n")
    with pytest.raises(LoadError) as info:
        load_runbook(str(path))
    assert (info.value.position.line, info.value.position.col) == (2, 1)


def test_template_syntax_error_names_the_step(capsys, monkeypatch, tmp_path):
    write(
        tmp_path,
        """
        name: x
        steps:
          - name: broken step
            hosts: localhost
            run: echo {{ oops
        """,
    )
    proc = main_in_process(capsys, monkeypatch, tmp_path, "validate", "rb.yml")
    assert_input_error(proc, "rb.yml:5:", "step 'broken step'", "template syntax")


def test_surrogate_escape_pair_is_a_character_or_an_input_error(tmp_path):
    (tmp_path / "rb.yml").write_text(
        "name: x\n"
        "vars:\n"
        '  party: "\\ud83c\\udf89"\n'  # line 3; the file holds the 12 characters \ud83c\udf89
        "steps:\n"
        "  - name: a\n"
        "    hosts: localhost\n"
        "    run: echo {{ party }}\n",
        encoding="utf-8",
    )
    proc = runbook_cli("plan", "rb.yml", "--format", "json", cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:  # decoded as YAML 1.2 and JSON do: one character, U+1F389
        assert json.loads(proc.stdout)["steps"][0]["batches"][0][0]["cmd"] == "echo \U0001f389"
    else:  # or refused as input, with its position
        assert_input_error(proc, "rb.yml:3:")
