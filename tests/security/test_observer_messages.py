"""What the run says about a failed observer is true (issue 24): the journal is the one
essential listener — when it cannot be written the run halts, and the message said "the
run goes on, the journal has it all". A console that fails is detached and the run goes on.
"""

from __future__ import annotations

from pathlib import Path

from runbook.model.events import Event, StepStarted
from tests.run.test_runner import FakeContext, make, run


class Failing:
    """A listener that fails at the second step's start, as a full disk does."""

    def __init__(self, essential: bool) -> None:
        self.essential = essential

    def handle(self, event: Event) -> None:
        if isinstance(event, StepStarted) and event.step == "two":
            raise OSError(28, "No space left on device")


RUNBOOK = """
name: observers
hosts:
  web: [localhost]
steps:
  - name: one
    hosts: web
    run: echo 1
  - name: two
    hosts: web
    run: echo 2
  - name: three
    hosts: web
    run: echo 3
"""


def test_a_failed_journal_halts_and_says_so(tmp_path: Path) -> None:
    said: list[str] = []
    ctx = FakeContext()
    result, _ = run(make(tmp_path, RUNBOOK), ctx, listeners=[Failing(True)], notify=said.append)
    assert result.halted and result.exit_code == 1
    assert ("three", "localhost") not in ctx.executed
    (message,) = said
    assert "the run halts" in message and "goes on" not in message, message


def test_a_failed_console_is_detached_and_the_run_goes_on(tmp_path: Path) -> None:
    said: list[str] = []
    ctx = FakeContext()
    result, _ = run(make(tmp_path, RUNBOOK), ctx, listeners=[Failing(False)], notify=said.append)
    assert not result.halted and result.exit_code == 0
    assert ("three", "localhost") in ctx.executed
    (message,) = said
    assert "the run goes on" in message, message
