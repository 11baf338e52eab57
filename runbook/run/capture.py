"""What is kept of a command's output: bounded, whatever the command prints.

200 MB of output cost 1 GB of controller RSS and a 383 MB journal (issue 24): every
transport kept all of it, several times over. Each stream of each command now keeps at
most ``OUTPUT_CAP`` bytes: its first half and its last half (where an error usually
is), cut at line ends so that no secret is split by the cut (masking is per line), and
the bytes in between are counted and dropped. The kept text says where it was cut
(``note``), and the result carries the count (``CommandResult.dropped``). ``-v`` still
streams everything as it comes; the journal keeps at most ``OUTPUT_CAP`` bytes of the
stream of one command too (``journal.store``).
"""

from __future__ import annotations

from runbook.options import OUTPUT_CAP


def note(dropped: int) -> bytes:
    """The line that stands where ``dropped`` bytes were left out."""
    return f"[runbook: {dropped} bytes of output dropped here]\n".encode()


class Capture:
    """One stream of one command: everything up to ``cap`` bytes; past that, the first
    and the last ``cap // 2`` bytes, whole lines only at the cut."""

    __slots__ = ("cap", "head", "tail", "total", "cut")

    def __init__(self, cap: int = OUTPUT_CAP) -> None:
        self.cap = cap
        self.head = bytearray()
        self.tail = bytearray()  # the last bytes seen, once past the cap
        self.total = 0
        self.cut = False

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if not self.cut:
            if len(self.head) + len(data) <= self.cap:
                self.head += data
                return
            self.cut = True
            room = self.cap // 2 - len(self.head)
            if room >= 0:
                self.head += data[:room]
                data = data[room:]
            else:
                data = bytes(self.head[room:]) + data
                del self.head[room:]
        self.tail += data
        excess = len(self.tail) - self.cap // 2
        if excess > 0:
            del self.tail[:excess]

    def kept(self) -> tuple[bytes, int]:
        """What is kept — all of it, or head, a ``note`` line, tail — and how many
        bytes of the output it leaves out."""
        if not self.cut:
            return bytes(self.head), 0
        head = _to_line_end(bytes(self.head))
        tail = _from_line_start(bytes(self.tail))
        dropped = self.total - len(head) - len(tail)
        return head + note(dropped) + tail, dropped


def kept(out: Capture, err: Capture) -> tuple[bytes, bytes, dict[str, int]]:
    """A command's stdout and stderr as kept, and the bytes dropped of each (only the
    streams that dropped any): ``Outcome``'s and ``CommandResult``'s ``dropped``."""
    (stdout, out_dropped), (stderr, err_dropped) = out.kept(), err.kept()
    dropped = {k: n for k, n in (("stdout", out_dropped), ("stderr", err_dropped)) if n}
    return stdout, stderr, dropped


def _to_line_end(head: bytes) -> bytes:
    """``head`` up to and with its last newline (nothing if it has none)."""
    return head[: head.rfind(b"\n") + 1]


def _from_line_start(tail: bytes) -> bytes:
    """``tail`` from after its first newline (nothing if it has none): its first line
    may be the end of a line whose start was dropped."""
    nl = tail.find(b"\n")
    return tail[nl + 1 :] if nl >= 0 else b""
