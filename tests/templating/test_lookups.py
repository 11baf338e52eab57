"""Lookups as Ansible spells them: env, file, pipe (templating/lookups.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.errors import Position, TemplateError
from runbook.templating.env import evaluate, render
from runbook.templating.lookups import Lookups, SecretSource, planning, recording


def test_a_pipe_runs_once_per_planning_pass_whatever_the_hosts(tmp_path: Path) -> None:
    count = tmp_path / "count"
    source = f"{{{{ lookup('pipe', 'echo x >> {count}; wc -l < {count}') }}}}"
    where = Position(str(tmp_path / "rb.yml"), 3, 5)
    with planning(Lookups()):
        shown = {render(source, {"host": h}, where) for h in ("a", "b", "c")}
    assert shown == {"1"}  # one run, its value for every host
    with planning(Lookups()):  # another pass runs it again
        assert render(source, {}, where) == "2"


def test_query_lists_env_defaults_and_unknown_lookups(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOOKUP_A", "1")
    monkeypatch.delenv("LOOKUP_UNSET", raising=False)
    assert render("{{ query('env', 'LOOKUP_A', 'LOOKUP_A') }}", {}) == "['1', '1']"
    assert render("{{ lookup('env', 'LOOKUP_A', 'LOOKUP_A') }}", {}) == "1,1"
    assert render("{{ lookup('env', 'LOOKUP_UNSET') }}", {}) == ""
    assert render("{{ lookup('env', 'LOOKUP_UNSET', default='d') }}", {}) == "d"
    assert evaluate("lookup('env', 'LOOKUP_A') == '1'", {})
    with pytest.raises(TemplateError, match="lookup 'vars' is not supported"):
        render("{{ lookup('vars', 'x') }}", {})
    with pytest.raises(TemplateError, match=r"lookup\('file', 'nope'\): cannot read"):
        render("{{ lookup('file', 'nope') }}", {}, Position(str(tmp_path / "rb.yml"), 1, 1))


def test_a_refused_pipe_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with planning(Lookups(pipe_refused="reviewing")), pytest.raises(TemplateError) as info:
        render(f"{{{{ lookup('pipe', 'touch {marker}') }}}}", {}, Position("rb.yml", 4, 5))
    assert "not run: reviewing" in info.value.message
    assert info.value.position == Position("rb.yml", 4, 5)
    assert not marker.exists()


def test_a_lookup_of_a_secrets_source_is_that_secret(tmp_path: Path) -> None:
    token = tmp_path / "token.txt"
    token.write_text("real value\n")
    lookups = Lookups(secrets=(SecretSource("tok", file=str(token)),))
    where = Position(str(tmp_path / "rb.yml"), 1, 1)
    with planning(lookups), recording() as touched:
        # The context holds the secret's stand-in at plan time, its value at apply.
        assert render("{{ lookup('file', 'token.txt') }}", {"tok": "***"}, where) == "***"
        assert render("{{ lookup('file', 'token.txt') }}", {"tok": "real"}, where) == "real"
    assert touched == {"tok"}


@pytest.mark.parametrize(
    "call", ["lookup('file', 'x.txt')", "query('file', 'x.txt')[0]", "q('file', 'x.txt')[0]"]
)
def test_every_spelling_of_a_lookup_reads_beside_the_runbook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """``q`` is ``query`` (as in Ansible): relative to the runbook's directory, not to
    where runbook runs, in a template and in an expression."""
    (tmp_path / "x.txt").write_text("beside\n")
    monkeypatch.chdir(tmp_path.parent)  # where runbook runs: no x.txt here
    where = Position(str(tmp_path / "rb.yml"), 1, 1)
    assert render("{{ " + call + " }}", {}, where) == "beside"
    assert evaluate(call + " == 'beside'", {}, where)


@pytest.mark.parametrize("call", ["lookup('file', 'token.txt')", "q('file', 'token.txt')[0]"])
def test_a_secret_read_through_any_spelling_is_recorded_on_every_render(
    tmp_path: Path, call: str
) -> None:
    """Rendered text of a template that calls a lookup is never reused: the second host's
    render must record the secret too (or its command would not be masked)."""
    token = tmp_path / "token.txt"
    token.write_text("real value\n")
    lookups = Lookups(secrets=(SecretSource("tok", file=str(token)),))
    where = Position(str(tmp_path / "rb.yml"), 1, 1)
    source = "{{ " + call + " }} {{ port }}"
    for _host in ("a", "b"):
        with planning(lookups), recording() as touched:
            assert render(source, {"tok": "***", "port": 5432}, where) == "*** 5432"
        assert touched == {"tok"}
