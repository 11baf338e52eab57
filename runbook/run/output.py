"""Output of running commands, as it arrives: masked, then handed to the listeners.

A line goes out as soon as it is complete, from the command's first byte on (``-v``
shows it as ``host | line``; the journal keeps it, so a controller killed mid-command
leaves the partial output on disk). A line not yet ended goes out once it has waited
``FLUSH_AFTER`` seconds for its end (a prompt, a progress dot), so nothing a command
printed stays hidden while it is silent: ``echo first; sleep 4`` shows ``first`` at once.

Masking is per line, as the console shows it; a line not yet ended is held back by as
many characters as the longest secret minus one, so a secret split across two chunks is
still masked (SPEC §8).
"""

from __future__ import annotations

import codecs
import heapq
import itertools
import re
import threading
import time
from collections.abc import Callable

FLUSH_AFTER = 0.2  # seconds a line without its end waits before it is shown anyway
MAX_PARTIAL = 4096  # characters of a line without its end that are shown without waiting
Emit = Callable[[str, str], None]  # (stream name, masked text)


class StreamMasker:
    """Masks one output stream chunk by chunk, never emitting part of a secret."""

    def __init__(self, mask: Callable[[str], str], pattern: re.Pattern[str] | None, longest: int):
        self.mask = mask
        self.pattern = pattern
        self.hold = max(0, longest - 1)
        self.buf = ""

    @property
    def partial(self) -> bool:
        """Whether a line without its end is held."""
        return bool(self.buf)

    def feed(self, text: str) -> str:
        """The complete lines of the text so far (masked); a line not yet ended is kept,
        unless it grew past ``MAX_PARTIAL`` (then most of it is shown)."""
        self.buf += text
        nl = self.buf.rfind("\n")
        cut = nl + 1 if nl >= 0 else 0
        if len(self.buf) - cut > MAX_PARTIAL:
            cut = max(cut, self._safe_cut(len(self.buf) - self.hold))
        return self._take(cut)

    def partial_line(self) -> str:
        """The line not yet ended, as much of it as cannot be the start of a secret."""
        return self._take(self._safe_cut(len(self.buf) - self.hold))

    def flush(self) -> str:
        return self._take(len(self.buf))

    def _take(self, cut: int) -> str:
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return self.mask(out) if out else ""

    def _safe_cut(self, cut: int) -> int:
        """Move a cut inside a secret back to where the secret starts."""
        cut = max(cut, 0)
        if self.pattern is not None:
            for m in self.pattern.finditer(self.buf):
                if m.start() < cut < m.end():
                    return m.start()
        return cut


_utf8 = codecs.getincrementaldecoder("utf-8")


class OutputRelay:
    """One command's output: decoded, masked per stream, each line emitted as it ends; a
    line without its end after ``flush_after`` seconds; the rest when the command ends."""

    def __init__(
        self,
        emit: Emit,
        mask: Callable[[str], str],
        pattern: re.Pattern[str] | None = None,
        longest: int = 0,
        flush_after: float = FLUSH_AFTER,
    ) -> None:
        self.emit = emit
        self.flush_after = flush_after
        self._lock = threading.Lock()
        self._done = False
        self._due = False  # a flush of the line without its end is scheduled
        self._maskers = {
            name: StreamMasker(mask, pattern, longest) for name in ("stdout", "stderr")
        }
        # Per stream: a UTF-8 sequence split across chunks is decoded when it completes,
        # as decoding the whole output at once would (invalid bytes replaced).
        self._decoders = {name: _utf8(errors="replace") for name in ("stdout", "stderr")}

    def __call__(self, stream: str, chunk: bytes) -> None:
        with self._lock:
            if self._done:
                return
            shown = self._maskers[stream].feed(self._decoders[stream].decode(chunk))
            if shown:
                self.emit(stream, shown)
            if not self._due and any(m.partial for m in self._maskers.values()):
                self._due = True
                _FLUSHER.schedule(time.monotonic() + self.flush_after, self._flush_partial)

    def _flush_partial(self) -> None:
        """Called by the flusher: show the lines still waiting for their end."""
        with self._lock:
            self._due = False
            if self._done:
                return
            for stream, masker in self._maskers.items():
                shown = masker.partial_line()
                if shown:
                    self.emit(stream, shown)

    def finish(self) -> None:
        """The command ended: emit what is left (a last line without its end)."""
        with self._lock:
            if self._done:
                return
            self._done = True
            for stream, masker in self._maskers.items():
                tail = self._decoders[stream].decode(b"", final=True)
                rest = masker.feed(tail) + masker.flush()
                if rest:
                    self.emit(stream, rest)


class _Flusher:
    """One thread for every relay's timed flushes: a heap of deadlines, asleep when it is
    empty. Started on first use; a daemon, so it never keeps the process alive."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, call: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), call))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="runbook-output-flush", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, _, call = heapq.heappop(self._heap)
            call()  # a relay's emit never raises: the runner detaches failing listeners


_FLUSHER = _Flusher()
