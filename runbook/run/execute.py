"""``run_command``: one command through its attempts — the one place that decides a status
(a wait or reboot decides its own, in ``waits``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from runbook.errors import ConnectError, ConnectionLost, TemplateError
from runbook.model.command import Command, CommandResult, Outcome, Status, decode
from runbook.run.contexts.base import ExecutionContext, OutputCallback
from runbook.run.values import output_value
from runbook.templating.env import evaluate

_NEVER = threading.Event()  # a halt that never comes, for callers without one


def run_command(
    command: Command,
    context: ExecutionContext,
    *,
    cancel: threading.Event | None = None,
    mask: Callable[[str], str] = str,
    on_output: OutputCallback | None = None,
    kill: threading.Event | None = None,
) -> CommandResult:
    """Run ``command`` with its retries.

    A connection that could not be established is ``unreachable`` (the context already
    retried the connect); a command that started is re-run only when ``retries`` says so.
    A delegated command runs on its delegate; its result is its host's. A wait or reboot
    polls until its state is reached, or ``kill`` (the second Ctrl-C) is set.
    """
    if command.skip_reason is not None:
        return CommandResult.decided(command, Status.SKIPPED, command.skip_reason)
    if command.wait is not None:
        from runbook.run.waits import run_wait

        return run_wait(command, context, kill or _NEVER)
    cancel = cancel or _NEVER
    target = command
    if command.delegate is not None:  # the context sees the delegate; the result is the target's
        command = replace(command, host=command.delegate)
    spec = command.spec
    started = time.time()
    attempts = 0
    while True:
        attempts += 1
        try:
            if command.transfer is not None:
                outcome = context.transfer(command)
            else:
                outcome = context.execute(command, on_output)
        except ConnectError as exc:
            return CommandResult(
                command.step,
                target.host.name,
                Status.UNREACHABLE,
                started=started,
                finished=time.time(),
                attempts=attempts,
                error=mask(exc.message),
                maybe_ran=isinstance(exc, ConnectionLost) or attempts > 1,
                item=command.item_index,
            ).transferred(command)
        stdout, stderr = decode(outcome.stdout), decode(outcome.stderr)
        status, error = judge(command, outcome, stdout, stderr)
        if status is Status.OK or outcome.killed or attempts > spec.retries:
            break
        if cancel.wait(spec.delay):  # halted while waiting: do not start again
            break
    result = CommandResult(
        command.step,
        target.host.name,
        status,
        rc=outcome.rc,
        stdout=mask(stdout),
        stderr=mask(stderr),
        started=started,
        finished=time.time(),
        attempts=attempts,
        error=mask(error) if error else error,  # an until's message may quote a value
        item=command.item_index,
        dropped=outcome.dropped,
    )
    return result.transferred(command, outcome)


def judge(
    command: Command, outcome: Outcome, stdout: str, stderr: str
) -> tuple[Status, str | None]:
    """What one attempt means: killed, timed out, ``until`` met or not, exit code."""
    if outcome.killed:
        return Status.FAILED, "killed: the run was interrupted"
    if outcome.timed_out and command.transfer is not None:
        return Status.TIMED_OUT, f"timed out after {command.timeout:g}s; nothing was written"
    if outcome.timed_out:
        return Status.TIMED_OUT, f"timed out after {command.timeout:g}s; process group killed"
    if command.transfer is not None and outcome.rc != 0:
        return Status.FAILED, f"{command.transfer.kind} failed: {stderr.strip()}"
    until = command.spec.until
    if until:
        # The output as a registered value has it (one stdout everywhere, SPEC §11).
        context = {**command.until_vars, "rc": outcome.rc, **output_value(stdout, stderr)}
        try:
            done = evaluate(until, context)
        except TemplateError as exc:  # at run time: this command fails, the run goes on
            where = TemplateError(
                f"until: {exc.message}", command.until_at, step=command.step, host=command.host.name
            )
            return Status.FAILED, str(where)
        return (Status.OK, None) if done else (Status.FAILED, f"until not met: {until}")
    if outcome.rc == 0:
        return Status.OK, None
    return Status.FAILED, f"exit code {outcome.rc}"
