"""The planner: vars, templates, batching, host selection, determinism and golden plans.

Most cases use the Python API (``load_runbook`` → ``build_inventory`` → ``make_plan``, as
``runbook plan`` does); what lives only in the CLI (``-e``/``--vars-file`` parsing) goes
through ``runbook.cli.main.main`` in-process, and the printed plan (golden files, determinism
across hash seeds) through a real ``python -m runbook plan`` process.

Golden plans: ``tests/golden/<case>.{txt,json}`` are the reviewed output of
``runbook plan`` for the runbooks in ``tests/data/runbooks/``. After an intended change,
regenerate with ``UPDATE_GOLDEN=1 pytest tests/plan/test_planner.py -k golden`` and read the
diff before committing it: the golden files are the expectation, not a snapshot.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from runbook.errors import InputError, InventoryError, TemplateError
from runbook.inventory.build import build_inventory
from runbook.load.loader import load_runbook
from runbook.load.secrets import resolve_secrets
from runbook.plan.planner import Plan, Selection, batches, make_plan
from tests.e2e.helpers import runbook as runbook_cli

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data" / "runbooks"
GOLDEN = TESTS / "golden"
HANG = 60


# -- helpers ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "rb.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def plan_of(
    path: Path,
    extra: dict | None = None,
    selection: Selection | None = None,
) -> Plan:
    rb = load_runbook(str(path))
    inv = build_inventory(rb.hosts, rb.inventory, rb.positions, rb.path)
    return make_plan(rb, inv, extra, resolve_secrets(rb.secrets), selection)


def cmds(plan: Plan, step: str) -> dict[str, str]:
    """host → rendered command for one step."""
    found = [s for s in plan.steps if s.name == step]
    assert found, f"no step {step!r} in {[s.name for s in plan.steps]}"
    return {c.host.name: c.cmd for c in found[0].commands}


def hosts_of(plan: Plan, step: str) -> list[str]:
    return list(cmds(plan, step))


FLEET = """
name: fleet
hosts:
  web:
    hosts:
      web1: {}
      web2: {}
      web3: {}
  db:
    hosts:
      db1: {}
      db2: {}
  canary: [web2, db1]
steps:
  - name: s
    hosts: all
    run: echo {{ host.name }}
"""


def fleet_with_step(tmp_path: Path, hosts: str) -> Plan:
    text = textwrap.dedent(FLEET).replace("hosts: all", f"hosts: {json.dumps(hosts)}")
    return plan_of(write(tmp_path, text))


# -- variables --------------------------------------------------------------------------

PRECEDENCE = """
name: precedence
hosts:
  grp:
    hosts:
      h_group: {connection: local}
      h_host: {connection: local, vars: {v: from_host}}
    vars: {v: from_group}
  plain:
    hosts:
      h_runbook: {connection: local}
vars: {v: from_runbook}
steps:
  - name: show
    hosts: all
    run: echo {{ v }}
"""


@pytest.fixture
def plan_json(capsys, monkeypatch):
    """``runbook plan FILE --format json ARGS...`` in-process → host → command of step 1."""
    from runbook.cli.main import main

    def run(cwd: Path, *args: str) -> dict[str, str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        rc = main(["plan", "rb.yml", "--format", "json", *args])
        out, err = capsys.readouterr()
        assert rc == 0, err
        plan = json.loads(out)
        return {c["host"]: c["cmd"] for b in plan["steps"][0]["batches"] for c in b}

    return run


def test_var_precedence_runbook_group_host_varsfile_extra(tmp_path, plan_json):
    write(tmp_path, PRECEDENCE)
    (tmp_path / "vf.yml").write_text("v: from_vars_file\n")

    base = plan_json(tmp_path)
    # runbook < group < host
    assert base == {
        "h_group": "echo from_group",
        "h_host": "echo from_host",
        "h_runbook": "echo from_runbook",
    }
    # < --vars-file, which beats even a host var
    with_file = plan_json(tmp_path, "--vars-file", "vf.yml")
    assert set(with_file.values()) == {"echo from_vars_file"}
    # < -e, wherever it stands on the command line
    for args in (
        ["--vars-file", "vf.yml", "-e", "v=from_e"],
        ["-e", "v=from_e", "--vars-file", "vf.yml"],
    ):
        out = plan_json(tmp_path, *args)
        assert set(out.values()) == {"echo from_e"}, args


def test_later_extra_var_wins_over_earlier(tmp_path, plan_json):
    write(tmp_path, PRECEDENCE)
    assert set(plan_json(tmp_path, "-e", "v=one", "-e", "v=two").values()) == {"echo two"}


def test_extra_vars_file_given_last_wins(tmp_path, plan_json):
    write(tmp_path, PRECEDENCE)
    (tmp_path / "late.yml").write_text("v: from_late_file\n")
    out = plan_json(tmp_path, "-e", "v=early", "-e", "@late.yml")
    assert set(out.values()) == {"echo from_late_file"}


def test_extra_var_text_is_kept_as_written(tmp_path, plan_json):
    write(
        tmp_path,
        """
        name: x
        steps:
          - name: s
            hosts: localhost
            run: echo {{ version }} {{ mode }} {{ answer }}
        """,
    )
    out = plan_json(tmp_path, "-e", "version=1.10", "-e", "mode=0755", "-e", "answer=no")
    assert out == {"localhost": "echo 1.10 0755 no"}


def test_extra_var_number_still_works_in_arithmetic(tmp_path, plan_json):
    write(
        tmp_path,
        """
        name: x
        steps:
          - name: s
            hosts: localhost
            run: echo {{ n + 1 }}
        """,
    )
    assert plan_json(tmp_path, "-e", "n=41") == {"localhost": "echo 42"}


def test_quote_filter_makes_one_shell_word(tmp_path):
    value = """it's a "b c" $HOME; `x` \\ end"""
    path = write(
        tmp_path,
        f"""
        name: q
        vars:
          v: {json.dumps(value)}
        steps:
          - name: s
            hosts: localhost
            run: printf '%s' {{{{ v | quote }}}}
        """,
    )
    cmd = cmds(plan_of(path), "s")["localhost"]
    # shlex.quote by hand: single-quote everything, each ' becomes '"'"'
    assert cmd == """printf '%s' 'it'"'"'s a "b c" $HOME; `x` \\ end'"""
    out = subprocess.run(["/bin/bash", "-c", cmd], capture_output=True, text=True, timeout=HANG)
    assert out.stdout == value


def test_var_values_are_not_rendered_again(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        vars:
          inner: "{{ secret_looking }}"
        steps:
          - name: s
            hosts: localhost
            run: echo {{ inner | quote }}
        """,
    )
    # No TemplateError for the undefined name inside the value: values are data.
    assert cmds(plan_of(path), "s")["localhost"] == "echo '{{ secret_looking }}'"


def test_env_values_are_rendered_per_host(tmp_path):
    path = write(
        tmp_path,
        """
        name: env
        hosts:
          g:
            hosts:
              a: {vars: {port: 1}}
              b: {vars: {port: 2}}
        vars: {home: /opt/app}
        env:
          APP_HOME: "{{ home }}"
          NUM: 7
          FLAG: true
        steps:
          - name: s
            hosts: g
            run: echo $APP_PORT
            env:
              APP_PORT: "{{ port }}"
              WHO: "{{ host.name }}@{{ env.APP_HOME }}"
        """,
    )
    step = plan_of(path).steps[0]
    envs = {c.host.name: c.env for c in step.commands}
    shared = {"APP_HOME": "/opt/app", "NUM": "7", "FLAG": "true"}
    assert envs == {
        "a": {**shared, "APP_PORT": "1", "WHO": "a@/opt/app"},
        "b": {**shared, "APP_PORT": "2", "WHO": "b@/opt/app"},
    }
    # Runbook env first, then the step's, in file order.
    assert list(envs["a"]) == ["APP_HOME", "NUM", "FLAG", "APP_PORT", "WHO"]
    # Env is exported, not substituted into the command text.
    assert {c.cmd for c in step.commands} == {"echo $APP_PORT"}


def test_step_env_overrides_runbook_env(tmp_path):
    path = write(
        tmp_path,
        """
        name: env
        env: {A: outer, B: kept}
        steps:
          - name: s
            hosts: localhost
            run: "true"
            env: {A: inner}
        """,
    )
    assert plan_of(path).steps[0].commands[0].env == {"A": "inner", "B": "kept"}


def test_template_context_has_host_groups_step_runbook(tmp_path):
    path = write(
        tmp_path,
        """
        name: ctx
        hosts:
          g:
            hosts:
              n1: {address: 10.1.1.1, port: 2200, user: ops}
        steps:
          - name: the step
            hosts: g
            run: >-
              {{ host.name }} {{ host.address }} {{ host.port }} {{ host.user }}
              {{ host.groups | join(',') }} {{ groups.g | join(',') }}
              {{ step.name }} {{ runbook.name }}
        """,
    )
    assert cmds(plan_of(path), "the step") == {
        "n1": "n1 10.1.1.1 2200 ops g n1 the step ctx",
    }


# -- template errors ----------------------------------------------------------------------


def test_undefined_name_is_a_template_error_with_step_host_and_position(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        hosts:
          g: [h1, h2]
        steps:
          - name: ok step
            hosts: g
            run: echo fine
          - name: bad step
            hosts: g
            run: echo {{ data_dirr }}
        """,
    )
    with pytest.raises(TemplateError) as info:
        plan_of(path)
    err = info.value
    assert err.step == "bad step"
    assert err.host == "h1"
    assert (err.position.file, err.position.line, err.position.col) == (str(path), 10, 5)
    assert str(err) == f"{path}:10:5: step 'bad step': host 'h1': 'data_dirr' is undefined"


def test_undefined_attribute_is_an_error_too(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        steps:
          - name: s
            hosts: localhost
            run: echo {{ host.nope }}
        """,
    )
    with pytest.raises(TemplateError, match="nope"):
        plan_of(path)


def test_error_in_the_last_step_fails_the_whole_plan(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        steps:
          - name: one
            hosts: localhost
            run: touch marker
          - name: two
            hosts: localhost
            run: echo
          - name: last
            hosts: localhost
            run: echo {{ missing }}
        """,
    )
    with pytest.raises(TemplateError) as info:
        plan_of(path)
    assert info.value.step == "last" and info.value.position.line == 11


def test_when_false_does_not_render_the_command(tmp_path):
    # Ansible-like: a skipped host's command is not templated, so its vars need not exist.
    path = write(
        tmp_path,
        """
        name: x
        hosts:
          g:
            hosts:
              a: {vars: {enabled: true, path: /a}}
              b: {vars: {enabled: false}}
        steps:
          - name: s
            hosts: g
            when: enabled
            run: ls {{ path }}
        """,
    )
    step = plan_of(path).steps[0]
    by_host = {c.host.name: c for c in step.commands}
    assert by_host["a"].cmd == "ls /a" and by_host["a"].skip_reason is None
    assert by_host["b"].skip_reason == "when: enabled"


# -- batches, when, run_once, local -------------------------------------------------------


def _names(bs) -> list[list[str]]:
    return [[c.host.name for c in b] for b in bs]


@pytest.mark.parametrize(
    "n,serial,expected",
    [
        (5, None, [5]),
        (5, 1, [1, 1, 1, 1, 1]),
        (5, 2, [2, 2, 1]),
        (5, 10, [5]),
        (4, "50%", [2, 2]),
        (5, "50%", [2, 2, 1]),  # 50% of 5 = 2.5 → 2 per batch
        (3, "10%", [1, 1, 1]),  # 0.3 → at least one host per batch
        (4, "100%", [4]),
        (4, [1, "50%"], [1, 2, 1]),  # the last size repeats; % of the whole step
        (10, [1, 2, "50%"], [1, 2, 5, 2]),
        (2, [3, 1], [2]),
    ],
)
def test_serial_batches(tmp_path, n, serial, expected):
    hosts = "\n".join(f"      h{i}: {{}}" for i in range(1, n + 1))
    serial_line = "" if serial is None else f"    serial: {json.dumps(serial)}\n"
    path = write(
        tmp_path,
        "name: x\nhosts:\n  g:\n    hosts:\n"
        + hosts
        + "\nsteps:\n  - name: s\n    hosts: g\n    run: echo\n"
        + serial_line,
    )
    step = plan_of(path).steps[0]
    assert [len(b) for b in step.batches] == expected
    # Batches keep inventory order and cover every host once.
    assert [c.host.name for c in step.commands] == [f"h{i}" for i in range(1, n + 1)]


def test_batches_of_nothing_is_nothing():
    assert batches([], 2) == ()


def test_when_false_is_skipped_per_host(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        hosts:
          g:
            hosts:
              a: {vars: {role: primary}}
              b: {vars: {role: mirror}}
        steps:
          - name: s
            hosts: g
            when: role == "mirror"
            run: echo {{ role }}
          - name: never
            hosts: g
            when: false
            run: echo never
        """,
    )
    plan = plan_of(path)
    s = {c.host.name: c for c in plan.steps[0].commands}
    assert s["a"].skip_reason == 'when: role == "mirror"' and s["b"].skip_reason is None
    assert s["b"].cmd == "echo mirror"
    assert all(c.skip_reason for c in plan.steps[1].commands)


def test_run_once_takes_the_first_matching_host(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        hosts:
          g: [z1, a1, m1]
        steps:
          - name: s
            hosts: g
            run_once: true
            run: echo {{ host.name }}
        """,
    )
    assert cmds(plan_of(path), "s") == {"z1": "echo z1"}
    # With --limit, the first host left after the limit.
    limited = plan_of(path, selection=Selection(limit="a1:m1"))
    assert cmds(limited, "s") == {"a1": "echo a1"}


def test_local_step_runs_once_on_the_controller(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        hosts:
          g: [r1, r2]
        steps:
          - name: remote
            hosts: g
            run: echo
          - name: announce
            local: true
            run: echo {{ host.name }}
        """,
    )
    step = plan_of(path).steps[1]
    assert [(c.host.name, c.host.connection, c.cmd) for c in step.commands] == [
        ("localhost", "local", "echo localhost")
    ]
    # --limit picks remote hosts; it does not remove the controller step.
    limited = plan_of(path, selection=Selection(limit="r2"))
    assert hosts_of(limited, "remote") == ["r2"]
    assert hosts_of(limited, "announce") == ["localhost"]


def test_local_step_is_local_even_if_inventory_has_an_ssh_localhost(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        hosts:
          g:
            hosts:
              localhost: {address: 127.0.0.1, port: 2222, connection: ssh}
        steps:
          - name: announce
            local: true
            run: echo hi
        """,
    )
    (cmd,) = plan_of(path).steps[0].commands
    assert cmd.host.connection == "local"


def test_localhost_is_local_by_default(tmp_path):
    path = write(tmp_path, "name: x\nsteps:\n  - name: s\n    hosts: localhost\n    run: echo\n")
    (cmd,) = plan_of(path).steps[0].commands
    assert (cmd.host.name, cmd.host.connection) == ("localhost", "local")


# -- patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern,expected",
    [
        ("all", ["web1", "web2", "web3", "db1", "db2"]),
        ("web", ["web1", "web2", "web3"]),
        ("db:web", ["web1", "web2", "web3", "db1", "db2"]),  # union, inventory order
        ("web,db1", ["web1", "web2", "web3", "db1"]),
        ("web:&canary", ["web2"]),
        ("all:&canary:&db", ["db1"]),
        ("all:!web", ["db1", "db2"]),
        ("web:!canary", ["web1", "web3"]),
        ("web:db:&canary:!db1", ["web2"]),
        ("web[12]", ["web1", "web2"]),
        ("*1", ["web1", "db1"]),
        ("w*", ["web1", "web2", "web3"]),
        ("can*", ["web2", "db1"]),  # a glob also matches group names
        ("~^db\\d$", ["db1", "db2"]),
        ("web2", ["web2"]),
        ("web:&db", []),
    ],
)
def test_host_patterns(tmp_path, pattern, expected):
    assert hosts_of(fleet_with_step(tmp_path, pattern), "s") == expected


def test_pattern_list_is_a_union(tmp_path):
    text = textwrap.dedent(FLEET).replace("hosts: all", "hosts: [canary, web3]")
    assert hosts_of(plan_of(write(tmp_path, text)), "s") == ["web2", "web3", "db1"]


@pytest.mark.parametrize("pattern", ["nosuch", "web:nosuch", "zz*"])
def test_unknown_pattern_is_an_inventory_error_with_position(tmp_path, pattern):
    with pytest.raises(InventoryError) as info:
        fleet_with_step(tmp_path, pattern)
    assert info.value.step == "s"
    assert info.value.position.line == 15  # the step's `hosts:` line in FLEET


def test_limit_with_only_an_exclusion_means_all_but(tmp_path):
    text = textwrap.dedent(FLEET)
    plan = plan_of(write(tmp_path, text), selection=Selection(limit="!db1"))
    assert hosts_of(plan, "s") == ["web1", "web2", "web3", "db2"]


# -- selection: --limit, --tags, --skip-tags, --start-at ----------------------------------

SELECT = """
name: select
hosts:
  g: [a, b, c]
steps:
  - name: prepare
    hosts: g
    run: echo prepare
    tags: [setup]
  - name: deploy
    hosts: g
    run: echo deploy
    tags: [deploy]
  - name: notify
    hosts: g
    run: echo notify
    tags: [always]
  - name: cleanup
    hosts: g
    run: echo cleanup
    tags: [deploy, slow]
"""


@pytest.mark.parametrize(
    "selection,steps",
    [
        (Selection(), ["prepare", "deploy", "notify", "cleanup"]),
        (Selection(tags=("deploy",)), ["deploy", "notify", "cleanup"]),
        (Selection(tags=("setup", "slow")), ["prepare", "notify", "cleanup"]),
        (Selection(skip_tags=("deploy",)), ["prepare", "notify"]),
        (Selection(tags=("deploy",), skip_tags=("slow",)), ["deploy", "notify"]),
        (Selection(start_at="notify"), ["notify", "cleanup"]),
        (Selection(start_at="deploy", skip_tags=("slow",)), ["deploy", "notify"]),
    ],
)
def test_step_selection(tmp_path, selection, steps):
    plan = plan_of(write(tmp_path, SELECT), selection=selection)
    assert [s.name for s in plan.steps] == steps


def test_limit_restricts_hosts_of_every_step(tmp_path):
    plan = plan_of(write(tmp_path, SELECT), selection=Selection(limit="a:c"))
    assert {s.name: hosts_of(plan, s.name) for s in plan.steps} == {
        "prepare": ["a", "c"],
        "deploy": ["a", "c"],
        "notify": ["a", "c"],
        "cleanup": ["a", "c"],
    }


def test_unknown_start_at_and_empty_limit_are_input_errors(tmp_path):
    path = write(tmp_path, SELECT)
    with pytest.raises(InputError, match="no step named 'nope'"):
        plan_of(path, selection=Selection(start_at="nope"))
    with pytest.raises(InputError, match="matches no host"):
        plan_of(path, selection=Selection(limit="a:&b"))
    # A --tags value that matches no step is an error like a --limit that matches nothing
    # (it used to run only the `always` steps, silently).
    with pytest.raises(InputError, match="--tags 'nothing-has-this' matches no step"):
        plan_of(path, selection=Selection(tags=("nothing-has-this",)))


def test_selection_through_the_cli(tmp_path):
    write(tmp_path, SELECT)
    proc = runbook_cli(
        "plan",
        "rb.yml",
        "--format",
        "json",
        *("--limit", "b", "--tags", "deploy", "--skip-tags", "slow", "--start-at", "deploy"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [(s["name"], [c["host"] for b in s["batches"] for c in b]) for s in data["steps"]] == [
        ("deploy", ["b"]),
        ("notify", ["b"]),
    ]


def test_max_failures_percentage_is_resolved_per_step(tmp_path):
    path = write(
        tmp_path,
        """
        name: x
        hosts:
          g: [a, b, c, d, e, f, g1, h]
        steps:
          - {name: pct, hosts: g, run: echo, max_failures: "25%"}
          - {name: pct_floor, hosts: g, run: echo, max_failures: "30%"}
          - {name: count, hosts: g, run: echo, max_failures: 3}
          - {name: none, hosts: g, run: echo}
        """,
    )
    plan = plan_of(path)
    # 25% of 8 = 2; 30% of 8 = 2.4 → 2 (floor, like Ansible's max_fail_percentage)
    assert [s.max_failures for s in plan.steps] == [2, 2, 3, 0]


# -- determinism and golden plans -----------------------------------------------------------


def test_plan_is_byte_identical_across_runs_and_hash_seeds():
    outs = set()
    for seed in ("1", "2"):
        for fmt in ("text", "json"):
            proc = runbook_cli(
                "plan",
                "patterns.yml",
                "--format",
                fmt,
                cwd=DATA,
                env={"PYTHONHASHSEED": seed},
            )
            assert proc.returncode == 0, proc.stderr
            outs.add((fmt, proc.stdout))
    assert len(outs) == 2  # one text, one json: identical bytes on every run


GOLDEN_SECRET = "s3cr'et pw"
GOLDEN_CASES = [
    ("rolling_restart", "rolling_restart.yml", []),
    ("patterns", "patterns.yml", []),
    ("patterns_deploy_web", "patterns.yml", ["--tags", "deploy", "--limit", "web*"]),
    ("procedures", "procedures.yml", []),
    (
        "procedures_start_inside",
        "procedures.yml",
        ["--start-at", "Wait until in sync", "--skip-tags", "notify"],
    ),
    ("files", "files.yml", []),
    ("failure", "failure.yml", []),
    (
        "vault",
        "vault.yml",
        [
            "--vault-password-file",
            "../inventories/ansible/vault/keys/vault-pass.txt",
            "--vault-id",
            "prod@../inventories/ansible/vault/keys/prod-pass.txt",
        ],
    ),  # fmt: skip
    ("values", "values.yml", []),  # set, assert, loop and templated settings
    ("failover", "failover.yml", []),  # discover steps; partial rendering; when per host
    ("per_host", "per_host.yml", []),
]


@pytest.mark.parametrize("fmt", ["txt", "json"])
@pytest.mark.parametrize("case,runbook,args", GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_golden_plan(case, runbook, args, fmt):
    proc = runbook_cli(
        "plan",
        runbook,
        "--format",
        "text" if fmt == "txt" else "json",
        *args,
        cwd=DATA,
        env={"RUNBOOK_GOLDEN_DB_PASSWORD": GOLDEN_SECRET},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # The secret never appears, neither raw nor shell-quoted.
    assert GOLDEN_SECRET not in out and "s3cr'\"'\"'et" not in out
    # The digest is checked here, then masked so that editing a fixture's comments does
    # not churn the golden files.
    digest = load_runbook(str(DATA / runbook)).digest  # the runbook and its includes
    shown = digest if fmt == "json" else digest[:19]
    assert shown in out
    out = out.replace(shown, "sha256:<digest>")

    golden = GOLDEN / f"{case}.{fmt}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(out, encoding="utf-8")
        pytest.skip(f"regenerated {golden.name}: review the diff before committing it")
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1 and review it"
    assert out == golden.read_text(encoding="utf-8")


def test_golden_json_agrees_with_golden_text():
    """The two renderings of a golden case list the same commands on the same hosts."""
    for case, _, _ in GOLDEN_CASES:
        data = json.loads((GOLDEN / f"{case}.json").read_text(encoding="utf-8"))
        text = (GOLDEN / f"{case}.txt").read_text(encoding="utf-8")
        for item in data["steps"]:
            if item.get("group"):
                assert f"] {item['name']}    group, hosts:" in text
                steps = [s for b in item["batches"] for s in b["steps"]]
            else:
                assert f"] {item['name']}    hosts:" in text
                steps = [item]
            for step in steps:
                assert f"] {step['name']}" in text
                for batch in step["batches"]:
                    for c in batch:
                        if "skipped" in c:
                            assert f"(skipped: {c['skipped']})" in text
                        else:
                            first_line = c["cmd"].rstrip("\n").split("\n")[0]
                            shell = not {"transfer", "wait", "set", "assert"} & set(c)  # no shell
                            prompt = "$ " if shell else ""
                            assert f"{prompt}{first_line}" in text


def test_quote_after_a_filter_that_returns_markup_is_plain_shell_quoting(tmp_path):
    """``tojson`` returns Markup, whose ``+`` HTML-escapes: ``shlex.quote`` of it gave
    ``&#39;...&#39;``, which the shell runs as ``&`` and a comment."""
    path = write(
        tmp_path,
        """
        name: q
        vars:
          v: "it's"
        steps:
          - name: s
            hosts: localhost
            run: printf '%s' {{ v | tojson | quote }} {{ 5 | quote }}
        """,
    )
    cmd = cmds(plan_of(path), "s")["localhost"]
    assert cmd == """printf '%s' '"it\\u0027s"' 5"""
