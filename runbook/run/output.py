"""Output of running commands, as it arrives: masked, then handed to the listeners.

Output of a command that is still running after ``LIVE_AFTER`` seconds (or that printed
more than ``OUTPUT_CAP`` bytes before: what is held back stays bounded) goes out as it
comes (``-v`` shows it as ``host | line``; the journal keeps it, so a controller killed
mid-command leaves the partial output on disk). A short command's output arrives with
its result instead: one event instead of two, for the common case.

Masking is per line, as the console shows it; a line not yet ended is held back by as
many characters as the longest secret minus one, so a secret split across two chunks is
still masked (SPEC §8).
"""

from __future__ import annotations

import codecs
import re
import threading
import time
from collections.abc import Callable

from runbook.options import OUTPUT_CAP

LIVE_AFTER = 1.0  # seconds a command runs before its output is streamed
Emit = Callable[[str, str], None]  # (stream name, masked text)


class StreamMasker:
    """Masks one output stream chunk by chunk, never emitting part of a secret."""

    def __init__(self, mask: Callable[[str], str], pattern: re.Pattern[str] | None, longest: int):
        self.mask = mask
        self.pattern = pattern
        self.hold = max(0, longest - 1)
        self.buf = ""

    def feed(self, text: str) -> str:
        """What can be shown of the text so far (masked); the rest is kept."""
        self.buf += text
        nl = self.buf.rfind("\n")
        cut = nl + 1 if nl >= 0 else 0
        partial_from = len(self.buf) - self.hold
        if partial_from > cut:  # a long line without a newline: show most of it
            cut = self._safe_cut(partial_from)
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return self.mask(out) if out else ""

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return self.mask(out) if out else ""

    def _safe_cut(self, cut: int) -> int:
        """Move a cut inside a secret back to where the secret starts."""
        if self.pattern is not None:
            for m in self.pattern.finditer(self.buf):
                if m.start() < cut < m.end():
                    return m.start()
        return cut


_utf8 = codecs.getincrementaldecoder("utf-8")


class OutputRelay:
    """One command's output: decoded, masked per stream, emitted once the command has run
    for ``LIVE_AFTER`` seconds (and whatever is left when it ends, if it streamed)."""

    def __init__(
        self,
        emit: Emit,
        mask: Callable[[str], str],
        pattern: re.Pattern[str] | None = None,
        longest: int = 0,
        live_after: float = LIVE_AFTER,
    ) -> None:
        self.emit = emit
        self.started = time.monotonic()
        self.live_after = live_after
        self.streamed = False
        self._lock = threading.Lock()
        self._pending: list[tuple[str, bytes]] = []
        self._held = 0  # bytes in _pending
        self._maskers = {
            name: StreamMasker(mask, pattern, longest) for name in ("stdout", "stderr")
        }
        # Per stream: a UTF-8 sequence split across chunks is decoded when it completes,
        # as decoding the whole output at once would (invalid bytes replaced).
        self._decoders = {name: _utf8(errors="replace") for name in ("stdout", "stderr")}

    def __call__(self, stream: str, chunk: bytes) -> None:
        with self._lock:
            self._pending.append((stream, chunk))
            self._held += len(chunk)
            held_back = time.monotonic() - self.started < self.live_after and not self.streamed
            if held_back and self._held <= OUTPUT_CAP:  # never more than the cap in memory
                return
            self._send(final=False)

    def finish(self) -> None:
        """The command ended: if anything was streamed, stream the rest too."""
        with self._lock:
            if self.streamed:
                self._send(final=True)

    def _send(self, final: bool) -> None:
        self.streamed = True
        pending, self._pending, self._held = self._pending, [], 0
        for stream, chunk in pending:
            text = self._decoders[stream].decode(chunk)
            shown = self._maskers[stream].feed(text)
            if shown:
                self.emit(stream, shown)
        if final:
            for stream, masker in self._maskers.items():
                tail = self._decoders[stream].decode(b"", final=True)
                rest = masker.feed(tail) + masker.flush()
                if rest:
                    self.emit(stream, rest)
