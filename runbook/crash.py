"""The last resort: a bug (never an input error) becomes one line and a crash report.

No Python traceback reaches the operator; the traceback goes into a file — the run's
journal when one is open, else the temp directory — and the exit code is 70 (EX_SOFTWARE),
so "exit 2" keeps meaning "bad input, nothing ran".
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from runbook.text import printable

EXIT_CRASH = 70

_journal: Path | None = None


def attach(journal_dir: Path | None) -> None:
    """Where the report of a crash during this run goes."""
    global _journal
    _journal = journal_dir


def report(exc: BaseException) -> int:
    """Write the report, print one line, return the exit code."""
    text = "".join(traceback.format_exception(exc))
    where = _journal if _journal is not None and _journal.is_dir() else Path(tempfile.gettempdir())
    name = f"runbook-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    path = where / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"runbook {' '.join(sys.argv[1:])}\n\n{text}")
        saved = f"; the details are in {path}"
    except OSError:
        saved = ""
    with contextlib.suppress(OSError):
        message = f"runbook: internal error ({type(exc).__name__}: {exc}){saved}; please report it"
        print(printable(message, multiline=False), file=sys.stderr)
    return EXIT_CRASH
