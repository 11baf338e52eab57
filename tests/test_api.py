"""The Python API (``runbook.api``): what a CI job or a chat-ops bot embeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook import api
from runbook.errors import InputError
from runbook.model.events import CommandFinished, Event, RunFinished, StepStarted

RUNBOOK = """\
name: api
hosts:
  g:
    hosts:
      a: {{connection: local}}
      b: {{connection: local}}
steps:
  - name: hello
    hosts: g
    run: echo hello {{{{ who }}}} from {{{{ host.name }}}} >> {out}
  - name: careful
    hosts: g
    confirm: really?
    run: echo careful >> {out}
"""


class Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)


def test_load_plan_and_apply_with_typed_events(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rb = tmp_path / "rb.yml"
    rb.write_text(RUNBOOK.format(out=out))
    planned = api.plan(str(rb), variables={"who": "the api"}, limit="a")
    assert "echo hello 'the api'" not in api.plan_text(planned)  # as written: no quote filter
    assert "echo hello the api from a" in api.plan_text(planned)
    seen = Events()
    asked: list[str] = []
    result = api.apply(
        planned, listeners=[seen], confirm=lambda name, msg: asked.append(name) or True
    )
    assert result.exit_code == 0 and result.status == "completed"
    assert out.read_text() == "hello the api from a\ncareful\n"
    assert asked == ["careful"]
    assert [e.step for e in seen.events if isinstance(e, StepStarted)] == ["hello", "careful"]
    assert {e.result.host for e in seen.events if isinstance(e, CommandFinished)} == {"a"}
    assert isinstance(seen.events[-1], RunFinished)
    # Journaled like the CLI's runs.
    assert len(list((tmp_path / ".runbook" / "runs").glob("2*"))) == 1


def test_a_declined_confirmation_halts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rb = tmp_path / "rb.yml"
    rb.write_text(RUNBOOK.format(out=out))
    result = api.apply(api.load(str(rb), variables={"who": "x"}), confirm=lambda n, m: False)
    assert result.exit_code == 1 and "not confirmed" in (result.halted or "")
    assert "careful" not in out.read_text()


def test_bad_input_raises_input_error_with_the_cli_line(tmp_path: Path) -> None:
    rb = tmp_path / "rb.yml"
    rb.write_text(RUNBOOK.format(out=tmp_path / "out"))
    with pytest.raises(InputError) as err:
        api.load(str(rb))  # `who` is undefined
    assert str(err.value).startswith(f"{rb}:10:") and "'who' is undefined" in str(err.value)


def test_vault_ids_and_lookups_through_the_api(tmp_path: Path) -> None:
    vault = Path(__file__).parent / "data" / "inventories" / "ansible" / "vault"
    out = tmp_path / "out"
    rb = tmp_path / "rb.yml"
    rb.write_text(
        f"name: api vault\ninventory: {vault / 'hosts.ini'}\nsteps:\n"
        f"  - name: deliver\n    hosts: db1\n"
        "    run: echo {{ db_password | quote }} {{ lookup('pipe', 'echo piped') }}"
        f" > {out}\n"
    )
    with pytest.raises(InputError, match="no vault password is given"):
        api.plan(str(rb))
    ids = [str(vault / "keys" / "vault-pass.txt"), f"prod@{vault / 'keys' / 'prod-pass.txt'}"]
    planned = api.plan(str(rb), vault_ids=ids)
    assert "echo '********' piped" in api.plan_text(planned)
    assert api.apply(planned).exit_code == 0
    assert out.read_text() == "s3cret with spaces 'and' quotes piped\n"
