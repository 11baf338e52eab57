"""What the plain console prints, the stream masker and control characters."""

from __future__ import annotations

import io
import re
import threading
import time

from runbook.cli.console import PlainConsole
from runbook.model.command import CommandResult, Status, StepStatus
from runbook.model.events import CommandFinished, RunStarted, StepFinished, StepStarted
from runbook.run.output import OutputRelay, StreamMasker
from runbook.text import printable


def _console(verbose: bool = False) -> tuple[PlainConsole, io.StringIO]:
    out = io.StringIO()
    c = PlainConsole(out, verbose)
    c.handle(RunStarted(run_id="r", runbook="x", source="x", digest="", steps=["s"],
                        hosts=9, commands=9, forks=2))  # fmt: skip
    c.handle(StepStarted(run_id="r", step="s", index=0, hosts=list("abcdefghi"), batches=1,
                         on_failure="continue", max_failures=0))  # fmt: skip
    return c, out


def test_ok_results_fold_and_only_the_first_failures_show_their_output() -> None:
    c, out = _console()
    for i, host in enumerate("abcdefghi"):
        status = Status.OK if i < 2 else Status.FAILED
        c.handle(CommandFinished(run_id="r", result=CommandResult("s", host, status,
                                 rc=0 if i < 2 else 1, stderr=f"boom {host}\n")))  # fmt: skip
    c.handle(StepFinished(run_id="r", step="s", index=0, status=StepStatus.TOLERATED,
                          counts={"ok": 2, "failed": 7}, duration=1.0))  # fmt: skip
    c.close()  # written by the console's own thread: all of it once closed
    text = out.getvalue()
    assert " a " not in text and "FAILED      c" in text
    assert text.count("stderr:") == 5 and "boom h" not in text
    assert "output of 2 more failures: runbook show r --step 's'" in text
    assert "=> tolerated: 2 ok, 7 failed (1.00s)" in text


def test_the_stream_masker_never_splits_a_secret() -> None:
    secret = "hunter2-very-secret"
    pattern = re.compile(re.escape(secret))
    m = StreamMasker(lambda t: pattern.sub("***", t), pattern, len(secret))
    shown = "".join(m.feed(chunk) for chunk in ("x" * 40 + "hunter2-", "very-sec", "ret tail"))
    shown += m.flush()
    assert secret not in shown and "hunter2" not in shown.replace("***", "")
    assert shown == "x" * 40 + "*** tail"


def test_a_relay_shows_each_line_as_it_ends_and_a_waiting_line_after_a_moment() -> None:
    got: list[tuple[str, str]] = []
    done = threading.Event()

    def emit(stream: str, text: str) -> None:
        got.append((stream, text))
        if text == "prompt? ":
            done.set()

    relay = OutputRelay(emit, str, flush_after=0.05)
    relay("stdout", b"first\nsec")
    assert got == [("stdout", "first\n")]  # at once: the command's first chunk
    relay("stdout", b"ond\n")
    assert got[-1] == ("stdout", "second\n")
    relay("stdout", b"prompt? ")  # no end of line: shown once it has waited a moment
    assert done.wait(10), got
    relay("stdout", b"o\xc3")  # half of a two-byte character
    relay("stdout", b"\xa9\n")
    relay.finish()
    relay("stdout", b"after the end\n")  # ignored: the command has ended
    assert "".join(t for _, t in got) == "first\nsecond\nprompt? o\u00e9\n"


def test_a_waiting_line_never_shows_the_start_of_a_secret() -> None:
    secret = "hunter2-very-secret"
    pattern = re.compile(re.escape(secret))
    got: list[str] = []
    flushed = threading.Event()

    def emit(stream: str, text: str) -> None:
        got.append(text)
        flushed.set()

    relay = OutputRelay(emit, lambda t: pattern.sub("***", t), pattern, len(secret), 0.01)
    relay("stdout", b"password: hunter2-ve")  # then the command is silent for a while
    assert flushed.wait(10)
    time.sleep(0.05)  # a second flush, if one came, would show more
    # Held back: as many characters as the longest secret minus one.
    assert got == ["password: hunter2-ve"[: 20 - (len(secret) - 1)]]
    relay("stdout", b"ry-secret done\n")
    relay.finish()
    shown = "".join(got)
    assert shown == "password: *** done\n" and "hunter" not in shown


def test_control_characters_become_visible() -> None:
    assert printable("a\x1b[2Kb\rc\x07\td\n\x9b") == "a\\e[2Kb\\rc\\x07\td\n\\x9b"


def test_streamed_output_decodes_as_the_whole_output_would() -> None:
    """A UTF-8 sequence split across chunks is one character; invalid bytes are replaced."""
    whole = "café → ok\n".encode() + b"\xff bad\n"
    shown: list[tuple[str, str]] = []
    relay = OutputRelay(lambda stream, text: shown.append((stream, text)), lambda t: t, None, 0, 0)
    for i in range(len(whole)):  # one byte at a time: every sequence is split
        relay("stdout", whole[i : i + 1])
    relay("stderr", b"\xe2\x82")  # a sequence the command never finished
    relay.finish()
    assert "".join(t for s, t in shown if s == "stdout") == whole.decode("utf-8", "replace")
    assert "".join(t for s, t in shown if s == "stderr") == b"\xe2\x82".decode("utf-8", "replace")
