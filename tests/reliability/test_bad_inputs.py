"""Hostile and malformed input: every file of ``bad_inputs/`` must be refused cleanly.

Each corpus file starts with comment lines the test reads (a "table in the file"):

    # expect: 12: 'data_dirr' is undefined        an error at line 12 of this file
    # expect: inv/cycle.ini:10: group cycle       an error at line 10 of another file
    # expect: *: too large                        this file, any line (alias bombs)
    # expect: -: larger than                      this file, no line (whole-file errors)
    # expect: cli: --limit 'sdw9'                 no file position: a command-line error
    # args: --limit sdw9                          extra command-line arguments
    # command: inventory                          run `runbook inventory` instead of `plan`
    # apply                                       also run `apply --yes` on it

One ``expect`` line per error, in order: stderr must be exactly one line per error,
``FILE:LINE:COL: message``, where the message contains the expected text. The exit code
must be 2, with no traceback, nothing executed (every corpus step would ``touch MARKER``
in the working directory, and no run journal may appear), within 2 s of CPU and 200 MB.

Files under ``bad_inputs/inv/`` are inventories and vars files the runbooks reference.
The 10 MB file is generated (``test_ten_megabyte_file``) rather than stored.
"""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.helpers import Measured, run_measured

CORPUS = Path(__file__).resolve().parent / "bad_inputs"

CPU_BUDGET = 2.0  # seconds of CPU per run (the "within 2 seconds")
WALL_BUDGET = 15.0  # wall seconds: a "no hang" bound with slack for shared, loaded cores
RSS_BUDGET_MIB = 200.0
HANG_KILL = 20.0  # a run still going after this is killed and reported as hung

# Files the suite proves wrong today. Each entry is a bug reported to the lead, with its
# reproduction and proposed fix in the reliability report; remove the entry once fixed
# (strict xfail: the test fails loudly when the bug is gone).
KNOWN_BUGS: dict[str, str] = {}

_EXPECT = re.compile(
    r"#\s*expect:\s*(?:(?P<file>[^\s:]+):)??(?P<line>\d+|\*|-|cli):\s?(?P<text>.*)$"
)
_ERROR_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$")


@dataclass
class Expected:
    file: str | None  # None: the runbook itself
    line: str  # a number, "*", "-" or "cli"
    text: str


@dataclass
class Case:
    name: str
    expected: list[Expected] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    command: str = "plan"
    apply: bool = False


def read_case(path: Path) -> Case:
    case = Case(path.name)
    header = path.read_bytes()[:4096].decode("utf-8", "replace").splitlines()
    for raw in header:
        line = raw.lstrip("\ufffd\ufeff")
        if not line.startswith("#"):
            break
        if m := _EXPECT.match(line):
            case.expected.append(Expected(m["file"], m["line"], m["text"].strip()))
        elif line.startswith("# args:"):
            case.args = line.split(":", 1)[1].split()
        elif line.startswith("# command:"):
            case.command = line.split(":", 1)[1].strip()
        elif line.strip() == "# apply":
            case.apply = True
    return case


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file())


def _param(path: Path) -> object:
    marks = []
    if path.name in KNOWN_BUGS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.name]))
    return pytest.param(path, id=path.name, marks=marks)


def copy_corpus(dest: Path) -> Path:
    """A private copy: runs happen there, so a journal or MARKER cannot land in git, and
    one case's side effect cannot hide another's."""
    shutil.copytree(CORPUS, dest)
    return dest


def argv(case: Case, command: str) -> list[str]:
    if command == "apply":
        return ["apply", "--yes", *case.args, case.name]
    extra = ["--format", "json"] if command == "inventory" else []
    return [command, *extra, *case.args, case.name]


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], object]:
    """Every (file, command) run once, a few at a time: one process per run is the point
    (exit code, peak RSS, CPU of that process alone), and in series they take minutes."""
    jobs = [(p.name, read_case(p).command) for p in corpus_files()]
    jobs += [(p.name, "apply") for p in corpus_files() if read_case(p).apply]
    root = tmp_path_factory.mktemp("corpus")

    def run(job: tuple[str, str]) -> tuple[Measured, Path]:
        name, command = job
        cwd = copy_corpus(root / f"{name}.{command}")
        return run_measured(*argv(read_case(cwd / name), command), cwd=cwd, timeout=HANG_KILL), cwd

    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(jobs, pool.map(run, jobs), strict=True))


def check_refused(case: Case, run: Measured, cwd: Path) -> None:
    """The contract for bad input (SPEC §4), one assertion per promise."""
    assert not run.timed_out, f"hung: killed after {run.wall:.1f}s"
    assert "Traceback" not in run.stderr, run.stderr
    # No input reaches the last-resort handler (a bug's exit 70 and crash report).
    assert "internal error" not in run.stderr, run.stderr
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert not (cwd / "MARKER").exists(), "a command ran"
    assert not (cwd / ".runbook").exists(), "a run journal was written"
    lines = run.stderr.splitlines()
    assert len(lines) == len(case.expected), f"want {len(case.expected)} line(s):\n{run.stderr}"
    for got, want in zip(lines, case.expected, strict=True):
        check_line(got, want, case.name)
    assert run.cpu <= CPU_BUDGET, f"{run.cpu:.2f}s of CPU"
    assert run.wall <= WALL_BUDGET, f"{run.wall:.2f}s wall"
    assert run.peak_rss_mib <= RSS_BUDGET_MIB, f"peak RSS {run.peak_rss_mib:.0f} MiB"


def check_line(got: str, want: Expected, target: str) -> None:
    m = _ERROR_LINE.match(got)
    if want.line == "cli":
        assert m is None, f"a command-line error should not name a file position: {got}"
        assert want.text in got, got
        return
    if want.line == "-":
        file = want.file or target
        assert got.startswith(f"{file}: ") or f"/{file}: " in got, got
        assert want.text in got, got
        return
    assert m is not None, f"no FILE:LINE:COL at the start of: {got}"
    file = want.file or target
    assert m["file"] == file or m["file"].endswith("/" + file), (file, got)
    if want.line != "*":
        assert m["line"] == want.line, f"want line {want.line}: {got}"
    assert want.text in m["message"], f"want {want.text!r} in: {got}"


def test_corpus_is_large_enough() -> None:
    files = corpus_files()
    assert len(files) >= 40, len(files)
    for path in files:
        assert read_case(path).expected, f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", [_param(p) for p in corpus_files()])
def test_bad_input_is_refused(path: Path, corpus_runs: dict) -> None:
    case = read_case(path)
    run, cwd = corpus_runs[(path.name, case.command)]
    check_refused(case, run, cwd)


APPLIED = [p for p in corpus_files() if read_case(p).apply]


@pytest.mark.parametrize("path", [_param(p) for p in APPLIED])
def test_bad_input_is_refused_by_apply(path: Path, corpus_runs: dict) -> None:
    run, cwd = corpus_runs[(path.name, "apply")]
    check_refused(read_case(path), run, cwd)


def test_apply_subset_is_meaningful() -> None:
    assert len(APPLIED) >= 8


def test_ten_megabyte_file(tmp_path: Path) -> None:
    """10 MB of valid-looking YAML: refused by size before it is parsed."""
    workdir = tmp_path
    path = workdir / "big_10mb.yml"
    filler = "".join(f"  v{i}: {'x' * 80}\n" for i in range(120_000))
    path.write_text(
        "# expect: -: larger than\nname: big\nvars:\n"
        + filler
        + "steps:\n  - name: s\n    hosts: localhost\n    run: touch MARKER\n"
    )
    assert path.stat().st_size >= 10_000_000
    case = read_case(path)
    for command in ("plan", "apply"):
        args = [command, "--yes", path.name] if command == "apply" else [command, path.name]
        check_refused(case, run_measured(*args, cwd=workdir), workdir)
