"""A saved or resumed plan is narrowed, never re-rendered (SPEC §6, §8; issue 12 item 6).

``apply PLAN.json --limit h1`` and ``apply --resume ID --limit h1`` used to run on every
host. Now ``--limit``, ``--tags``, ``--skip-tags`` and ``--start-at`` keep part of a saved
or journaled plan exactly as they select from a runbook, and ``-e``, ``--vars-file`` and
``-i`` — which would change what commands render to — are refused (exit 2, nothing run).

Every command appends ``STEP-HOST`` to ``log`` in the apply's working directory, so each
case runs in a directory of its own (and its own ``--journal``), side by side.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.helpers import journal_dirs, runbook, write

HOSTS = ("n1", "n2", "n3")

RUNBOOK = """\
name: narrowing
hosts:
  nodes:
    hosts:
      n1: {connection: local}
      n2: {connection: local}
      n3: {connection: local}
steps:
  - name: first
    hosts: nodes
    tags: [alpha]
    run: echo first-{{ host.name }} >> log
  - name: second
    hosts: nodes
    tags: [beta]
    run: echo second-{{ host.name }} >> log
  - name: roll
    hosts: nodes
    serial: 1
    tags: [rolling]
    steps:
      - name: stop
        run: echo stop-{{ host.name }} >> log
      - name: start
        tags: [late]
        run: echo start-{{ host.name }} >> log
  - name: last
    hosts: nodes
    run: echo last-{{ host.name }} >> log
  - name: announce
    local: true
    run: echo announce-local >> log
"""


def each(steps: str, hosts: tuple[str, ...] = HOSTS) -> list[str]:
    return [f"{s}-{h}" for s in steps.split() for h in hosts]


LOCAL = ["announce-local"]  # the local step: --limit does not apply to the controller

# Selection → what runs: every step of the runbook is a side effect per host.
SELECTIONS: dict[str, tuple[list[str], list[str]]] = {
    "limit": (["--limit", "n1"], each("first second stop start last", ("n1",)) + LOCAL),
    "limit-group-pattern": (
        ["--limit", "nodes:!n2"],
        each("first second stop start last", ("n1", "n3")) + LOCAL,
    ),
    "tags": (["--tags", "beta"], each("second")),
    "tags-inner": (["--tags", "late"], each("start")),
    "skip-tags-inner": (["--skip-tags", "late"], each("first second stop last") + LOCAL),
    "start-at": (["--start-at", "second"], each("second stop start last") + LOCAL),
    # An inner step: the first batch (n1) starts there; later batches run whole.
    "start-at-inner": (
        ["--start-at", "start"],
        ["start-n1", *each("stop start", ("n2",)), *each("stop start", ("n3",)), *each("last")]
        + LOCAL,
    ),
    # ... the first batch that runs: n2's, as from the runbook (whose batches are made of
    # the limited hosts). A saved plan ran n2's `stop` too.
    "start-at-inner-and-limit": (
        ["--start-at", "start", "--limit", "n2"],
        ["start-n2", "last-n2", *LOCAL],
    ),
    "tags-and-limit": (["--tags", "rolling", "--limit", "n2"], each("stop start", ("n2",))),
    # Nothing before --start-at runs, even when --skip-tags leaves that step out: the first
    # batch runs nothing (from a runbook, it used to run n1's `stop`).
    "start-at-inner-skipped": (
        ["--start-at", "start", "--skip-tags", "late"],
        ["stop-n2", "stop-n3", *each("last"), *LOCAL],
    ),
}
MODES = ("saved-plan", "resume")
# From a runbook, the same selections are the reference (a few of them, for the cost).
RUNBOOK_SELECTIONS = (
    "limit",
    "start-at-inner",
    "start-at-inner-and-limit",
    "start-at-inner-skipped",
)
# Empty or blank narrowing values (SPEC §6): `--limit "$UNSET"` must not run everything.
BLANK = {
    "limit-empty": ["--limit", ""],
    "limit-space": ["--limit", " "],
    "limit-comma": ["--limit", ","],
    "limit-colon": ["--limit", ":"],
    "start-at-empty": ["--start-at", ""],
    "tags-space": ["--tags", " "],
    "skip-tags-empty": ["--skip-tags", ""],
}
REFUSED = {
    "-e": ["-e", "x=1"],
    "--vars-file": ["--vars-file", "VARS"],
    "-i": ["-i", "INV"],
}


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess[str]
    log: Counter[str]
    new_runs: int  # journaled runs this apply added


@dataclass
class Setup:
    root: Path
    rb: Path
    plan: Path
    failed_journal: Path  # holds one run that halted on `first` before anything ran
    failed_run: str


def prepare(root: Path) -> Setup:
    base = root / "base"
    base.mkdir()
    rb = write(base / "rb.yml", RUNBOOK)
    write(base / "vars.yml", "x: 1\n")
    write(base / "inv.ini", "[nodes]\nn9 ansible_connection=local\n")
    plan = base / "plan.json"
    done = runbook("plan", "--out", str(plan), str(rb), cwd=base)
    assert done.returncode == 0, done.stderr
    journal = base / "journal"
    # Fault injection fails `first` on every host without running it: the run halts and
    # nothing in it is ok, so a resume may run any part of the plan.
    failed = runbook(
        "apply", "--yes", "--journal", str(journal), str(rb),
        cwd=base, env={"RUNBOOK_FAULT_POINT": "first"},
    )  # fmt: skip
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert not (base / "log").exists()
    (run,) = [p.name for p in journal.iterdir() if p.is_dir()]
    return Setup(root, rb, plan, journal, run)


def apply_in(setup: Setup, name: str, mode: str, args: list[str]) -> Outcome:
    """``apply`` of the runbook, the saved plan or a resume of the failed run, in a fresh
    directory with a fresh journal (a copy of the failed run's, to resume)."""
    cwd = setup.root / name
    cwd.mkdir()
    journal = cwd / "journal"
    target = {"runbook": setup.rb, "saved-plan": setup.plan, "resume": setup.rb}[mode]
    extra = []
    if mode == "resume":
        shutil.copytree(setup.failed_journal, journal, symlinks=True)
        extra = ["--resume", setup.failed_run]
    before = runs_in(journal)
    args = [
        {"VARS": str(setup.rb.parent / "vars.yml"), "INV": str(setup.rb.parent / "inv.ini")}.get(
            a, a
        )
        for a in args
    ]
    proc = runbook("apply", "--yes", "--journal", str(journal), *extra, *args, str(target), cwd=cwd)
    log = cwd / "log"
    return Outcome(
        proc, Counter(log.read_text().split() if log.exists() else ()), runs_in(journal) - before
    )


def runs_in(journal: Path) -> int:
    return sum(p.is_dir() for p in journal.iterdir()) if journal.exists() else 0


JOBS: dict[str, tuple[str, list[str]]] = {
    **{f"{mode}-{sel}": (mode, args) for mode in MODES for sel, (args, _) in SELECTIONS.items()},
    **{f"runbook-{sel}": ("runbook", SELECTIONS[sel][0]) for sel in RUNBOOK_SELECTIONS},
    **{
        f"{mode}-refuses{flag}": (mode, args)
        for mode in ("saved-plan", "resume")
        for flag, args in REFUSED.items()
    },
    **{f"{mode}-no-such-tag": (mode, ["--tags", "nosuchtag"]) for mode in ("runbook", *MODES)},
    **{
        f"{mode}-blank-{name}": (mode, args)
        for mode in ("runbook", *MODES)
        for name, args in BLANK.items()
    },
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every job once, side by side: each is a CLI start-up or two and a few commands."""
    setup = prepare(tmp_path_factory.mktemp("narrowing"))
    with ThreadPoolExecutor(6) as pool:
        futures = {
            name: pool.submit(apply_in, setup, name, mode, args)
            for name, (mode, args) in JOBS.items()
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize(
    ("mode", "selection"),
    [(mode, sel) for mode in MODES for sel in SELECTIONS]
    + [("runbook", sel) for sel in RUNBOOK_SELECTIONS],
)
def test_a_selection_runs_only_its_part(
    outcomes: dict[str, Outcome], mode: str, selection: str
) -> None:
    done = outcomes[f"{mode}-{selection}"]
    if mode == "resume":
        # The resumed run halted before anything ran: every selection leaves part of it
        # undone, so the resume runs its part and does not report "completed" (issue 24).
        assert done.proc.returncode == 1, done.proc.stdout + done.proc.stderr
        assert "is not finished:" in done.proc.stdout and "left out by" in done.proc.stdout
    else:
        assert done.proc.returncode == 0, done.proc.stdout + done.proc.stderr
    assert done.log == Counter(SELECTIONS[selection][1])
    assert done.new_runs == 1


@pytest.mark.parametrize("mode", ["saved-plan", "resume"])
@pytest.mark.parametrize("flag", list(REFUSED))
def test_options_that_would_rerender_are_refused(
    outcomes: dict[str, Outcome], mode: str, flag: str
) -> None:
    done = outcomes[f"{mode}-refuses{flag}"]
    assert done.proc.returncode == 2, done.proc.stdout + done.proc.stderr
    assert "-e, --vars-file and -i cannot change" in done.proc.stderr
    assert len(done.proc.stderr.splitlines()) == 1 and "Traceback" not in done.proc.stderr
    assert not done.log and done.new_runs == 0


@pytest.mark.parametrize("mode", ["runbook", *MODES])
def test_a_tag_that_matches_no_step_is_an_input_error(
    outcomes: dict[str, Outcome], mode: str
) -> None:
    done = outcomes[f"{mode}-no-such-tag"]
    assert done.proc.returncode == 2, done.proc.stdout + done.proc.stderr
    assert "'nosuchtag' matches no step" in done.proc.stderr
    assert not done.log and done.new_runs == 0


@pytest.mark.parametrize("mode", ["runbook", *MODES])
@pytest.mark.parametrize("blank", list(BLANK))
def test_an_empty_or_blank_narrowing_value_is_an_input_error(
    outcomes: dict[str, Outcome], mode: str, blank: str
) -> None:
    done = outcomes[f"{mode}-blank-{blank}"]
    flag, value = BLANK[blank]
    assert done.proc.returncode == 2, done.proc.stdout + done.proc.stderr
    assert done.proc.stderr.startswith(f"{flag} {value!r} is empty: "), done.proc.stderr
    assert len(done.proc.stderr.splitlines()) == 1
    assert not done.log and done.new_runs == 0


@pytest.mark.parametrize(
    "selection",
    [{"limit": ""}, {"limit": " , "}, {"tags": [""]}, {"skip_tags": ["\t"]}, {"start_at": " "}],
)
def test_the_api_refuses_blank_narrowing_values_too(tmp_path: Path, selection: dict) -> None:
    from runbook import api
    from runbook.errors import UsageError

    rb = write(tmp_path / "rb.yml", RUNBOOK)
    with pytest.raises(UsageError, match="is empty"):
        api.load(str(rb), **selection)


def test_resume_with_limit_skips_what_was_ok_and_runs_only_the_limited_hosts(
    tmp_path: Path,
) -> None:
    """The run halts in the group's first batch (``start`` fails on n1); resuming with
    ``--limit n2`` runs n2's part of what did not finish, and nothing already ok."""
    rb = write(tmp_path / "rb.yml", RUNBOOK)
    failed = runbook("apply", "--yes", str(rb), cwd=tmp_path, env={"RUNBOOK_FAULT_POINT": "start"})
    assert failed.returncode == 1, failed.stdout + failed.stderr
    log = tmp_path / "log"
    assert Counter(log.read_text().split()) == Counter(each("first second") + ["stop-n1"])
    (run,) = journal_dirs(tmp_path)
    run_id = run.name
    log.unlink()
    resumed = runbook("apply", "--yes", "--resume", run_id, "--limit", "n2", str(rb), cwd=tmp_path)
    assert Counter(log.read_text().split()) == Counter(["stop-n2", "start-n2", "last-n2", *LOCAL])
    # n1's failed `start` and n3's part are still undone: not "completed" (issue 24).
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert f"run {run_id} is not finished: 'start' on n1" in resumed.stdout


ONCE = """\
name: once
hosts:
  nodes:
    hosts:
      n1: {connection: local}
      n2: {connection: local}
steps:
  - name: migrate
    hosts: nodes
    run_once: true
    run: echo migrate-{{ host.name }} >> log
  - name: after
    hosts: nodes
    run: echo after-{{ host.name }} >> log
"""


def test_a_run_once_step_outside_the_limit_is_not_dropped_silently(tmp_path: Path) -> None:
    rb = write(tmp_path / "rb.yml", ONCE)
    plan = tmp_path / "plan.json"
    assert runbook("plan", "--out", str(plan), str(rb), cwd=tmp_path).returncode == 0
    done = runbook("apply", "--yes", "--limit", "n2", str(plan), cwd=tmp_path)
    # Its command cannot move to n2 (not rendered again) nor run outside the limit:
    # refused, saying why, before anything runs.
    assert done.returncode == 2, done.stdout + done.stderr
    assert "step 'migrate' runs once, on n1, which --limit 'n2' leaves out" in done.stderr
    assert not (tmp_path / "log").exists()


def test_a_tag_found_only_before_start_at_is_refused_from_a_runbook(tmp_path: Path) -> None:
    rb = write(tmp_path / "rb.yml", RUNBOOK)
    done = runbook("apply", "--yes", "--start-at", "roll", "--tags", "alpha", str(rb), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'alpha' matches no step" in done.stderr
