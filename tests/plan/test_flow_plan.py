"""Planning the failure paths (SPEC section 10): delegates, ``batch``, rescue and always,
waits and reboots; and the input errors that stop a run before anything runs.

Plans are made through the Python API as ``runbook plan`` makes them; the input errors
go through a real ``python -m runbook apply`` (exit 2, ``FILE:LINE``, nothing run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.errors import InputError
from runbook.model.plan import PlannedGroup, Section, Selection
from runbook.plan.saved import plan_from_dict, plan_to_dict
from runbook.plan.text import plan_text
from runbook.run.values import RunValues
from tests.e2e.helpers import runbook as runbook_cli
from tests.plan.test_planner import plan_of, write

HOSTS = """
name: p
hosts:
  web: [web01, web02, web03, web04, web05]
  lb:
    hosts:
      lb1: {address: 10.0.0.9, user: ops, vars: {ansible_become: true}}
"""


def inner(plan, name: str):
    """Every planned copy of an inner step (one per batch), in order."""
    return [
        s
        for item in plan.steps
        if isinstance(item, PlannedGroup)
        for b in item.batches
        for s in b.steps
        if s.name == name
    ]


# -- delegate_to --------------------------------------------------------------------------


def test_a_delegated_command_is_for_its_target_and_runs_on_the_delegate(tmp_path):
    plan = plan_of(
        write(
            tmp_path,
            HOSTS
            + """
steps:
  - name: drain
    hosts: web
    delegate_to: controller
    run: lbctl drain {{ host.name }} from {{ delegate.name }}
  - name: add
    hosts: [web01, web02]
    delegate_to: "{{ 'lb' ~ 1 }}"
    run: lbctl add {{ host.name }} via {{ delegate.address }}
""",
        )
    )
    drain, add = plan.steps
    c = drain.commands[2]
    assert (c.host.name, c.delegate.name, c.delegate.is_local) == ("web03", "localhost", True)
    assert c.cmd == "lbctl drain web03 from localhost"
    a = add.commands[0]
    assert (a.host.name, a.runs_on.name, a.cmd) == ("web01", "lb1", "lbctl add web01 via 10.0.0.9")
    # The delegate's settings: lb1's ansible_become applies, not the target's.
    assert a.spec.become is True and drain.commands[0].spec.become is False
    text = plan_text(plan)
    assert "web03 → controller  $ lbctl drain web03 from localhost" in text
    assert "web01 → lb1  $ lbctl add web01 via 10.0.0.9" in text
    # JSON keeps the delegate by name, with its connection among the plan's hosts.
    data = plan_to_dict(plan)
    assert data["steps"][1]["batches"][0][0]["delegate"] == "lb1"
    assert data["hosts"]["lb1"] == {
        "address": "10.0.0.9",
        "user": "ops",
        "connection": "ssh",
        "groups": ["lb"],
        "become": True,
    }
    again = plan_from_dict(data, str(tmp_path / "plan.json"))
    assert again.steps[1].commands[0].delegate == a.delegate


def test_delegate_to_an_unknown_host_is_an_input_error_at_its_line(tmp_path):
    path = write(
        tmp_path,
        HOSTS + "steps:\n  - {name: s, hosts: web, delegate_to: lb9, run: x}\n",
    )
    with pytest.raises(InputError) as err:
        plan_of(path)
    assert str(err.value) == (
        f"{path}:8:27: step 's': host 'web01': delegate_to: unknown host 'lb9' (not in the "
        "inventory; `controller` is this machine)"
    )


def test_delegate_to_may_not_read_a_registered_value(tmp_path):
    path = write(
        tmp_path,
        HOSTS
        + """steps:
  - {name: find, hosts: lb, run: x, register: lbhost}
  - {name: s, hosts: web, delegate_to: "{{ lbhost.stdout }}", run: x}
""",
    )
    with pytest.raises(InputError, match="delegate_to reads 'lbhost', which is known only at"):
        plan_of(path)


# -- batch ----------------------------------------------------------------------------------


def test_batch_is_known_at_plan_time_in_groups_and_serial_steps(tmp_path):
    plan = plan_of(
        write(
            tmp_path,
            HOSTS
            + """
steps:
  - name: grp
    hosts: web
    serial: 2
    steps:
      - name: tell
        local: true
        run: "echo {{ batch.number }}/{{ batch.count }} {{ batch.hosts | join(',') }}"
      - {name: one, run: "echo {{ host.name }} in {{ batch.number }}"}
  - {name: rolling, hosts: web, serial: "40%", run: "echo {{ batch.number }}/{{ batch.count }}"}
""",
        )
    )
    assert [s.commands[0].cmd for s in inner(plan, "tell")] == [
        "echo 1/3 web01,web02",
        "echo 2/3 web03,web04",
        "echo 3/3 web05",
    ]
    assert [c.cmd for s in inner(plan, "one") for c in s.commands][-1] == "echo web05 in 3"
    rolling = plan.steps[1]
    assert [[c.cmd for c in b] for b in rolling.batches] == [
        ["echo 1/3", "echo 1/3"],
        ["echo 2/3", "echo 2/3"],
        ["echo 3/3"],
    ]
    assert all(c.templates is None for c in plan.commands)  # never deferred


def test_batch_outside_a_group_or_serial_step_is_undefined(tmp_path):
    path = write(
        tmp_path, HOSTS + "steps:\n  - {name: s, hosts: web, run: 'echo {{ batch.number }}'}\n"
    )
    with pytest.raises(InputError, match="'batch' is undefined"):
        plan_of(path)


# -- rescue and always ------------------------------------------------------------------------


GROUP = (
    HOSTS
    + """
steps:
  - name: grp
    hosts: web
    serial: 3
    tags: [patch]
    steps:
      - {name: work, run: work, register: out}
    rescue:
      - name: note
        delegate_to: controller
        run: "note {{ host.name }} {{ failed_step }} {{ failed_result.rc }}"
    always:
      - {name: log, run: "log {{ out.status }}"}
  - {name: later, hosts: web, tags: [later], run: later}
always:
  - {name: enable, local: true, run: enable}
"""
)


def test_rescue_and_always_are_planned_per_batch_under_their_group(tmp_path):
    plan = plan_of(write(tmp_path, GROUP))
    group = plan.steps[0]
    assert (group.inner, group.rescue, group.always) == (("work",), ("note",), ("log",))
    batch = group.batches[0]
    assert [(s.name, s.section) for s in batch.steps] == [
        ("work", Section.MAIN),
        ("note", Section.RESCUE),
        ("log", Section.ALWAYS),
    ]
    note = batch.steps[1].commands[0]
    assert note.templates.registers == ("failed_result", "failed_step")  # known in rescue
    assert plan.steps[-1].section is Section.ALWAYS and plan.steps[-1].name == "enable"
    text = plan_text(plan)
    assert "      rescue: on each host that failed a step above; rescued if all succeed\n" in text
    assert "      [1.2] note\n" in text and "      [1.3] log\n" in text
    assert "\nalways: after the steps, or after a halt or Ctrl-C; before the recap\n" in text
    # JSON round trip: sections and names survive.
    again = plan_from_dict(plan_to_dict(plan), str(tmp_path / "p.json"))
    assert again.steps[0].batches[1].steps[1].section is Section.RESCUE
    assert again.steps[-1].section is Section.ALWAYS and again.steps[0].rescue == ("note",)


def test_rescue_and_always_come_with_their_group_whatever_tags_say(tmp_path):
    path = write(tmp_path, GROUP)
    plan = plan_of(path, selection=Selection(tags=("patch",)))
    assert [s.name for s in plan.steps] == ["grp", "enable"]
    assert plan.steps[0].rescue == ("note",)
    plan = plan_of(path, selection=Selection(start_at="later"))
    assert [s.name for s in plan.steps] == ["later", "enable"]  # always, from anywhere
    plan = plan_of(path, selection=Selection(skip_tags=("later",)))
    assert [s.name for s in plan.steps] == ["grp", "enable"]


def test_failed_step_outside_rescue_is_undefined(tmp_path):
    path = write(tmp_path, GROUP.replace("log {{ out.status }}", "log {{ failed_step }}"))
    with pytest.raises(InputError, match="'failed_step' is undefined"):
        plan_of(path)


def test_a_register_named_like_a_flow_name_is_refused(tmp_path):
    path = write(tmp_path, HOSTS + "steps:\n  - {name: s, hosts: web, run: x, register: batch}\n")
    with pytest.raises(InputError, match="register 'batch' has the same name as a variable"):
        plan_of(path)


# -- wait_for and reboot ---------------------------------------------------------------------


WAITS = (
    HOSTS
    + """
vars: {http: 8080}
steps:
  - {name: ready, hosts: web01, run: x, register: kernel}
  - name: port
    hosts: [web01, web02]
    wait_for: {port: "{{ http }}", address: "{{ host.name }}.example", state: stopped, timeout: 30}
  - name: up
    hosts: web01
    wait_for: {connection: up}
  - name: boot
    hosts: web01
    when: kernel.stdout == "new"
    reboot: {command: "systemctl reboot", timeout: 900, delay: 10}
"""
)


def test_waits_and_reboots_are_planned_with_their_limits(tmp_path):
    plan = plan_of(write(tmp_path, WAITS))
    _, port, up, boot = plan.steps
    w = port.commands[1].wait
    assert (w.port, w.address, w.state.value, w.timeout, w.delay) == (
        8080,
        "web02.example",
        "stopped",
        30.0,
        1.0,
    )
    text = plan_text(plan)
    assert "web02  wait_for port 8080 on web02.example stopped (timeout 30s, poll every 1s)" in text
    assert "web01  wait_for connection up (timeout 300s, poll every 1s)" in text
    assert (
        "web01  reboot: systemctl reboot (check: cat /proc/sys/kernel/random/boot_id; "
        "timeout 900s, poll every 10s)"
    ) in text
    # A reboot only when the kernel changed: decided just before it runs.
    cmd = boot.commands[0]
    assert cmd.templates is not None and cmd.templates.when == 'kernel.stdout == "new"'
    values = RunValues(plan, {}, str)
    values.set("kernel", ["web01"], {"status": "ok", "stdout": "old"})
    assert values.executable(cmd).skip_reason == 'when: kernel.stdout == "new"'
    again = plan_from_dict(plan_to_dict(plan), str(tmp_path / "p.json"))
    assert again.steps[3].commands[0].wait == cmd.wait


@pytest.mark.parametrize(
    "step,message",
    [
        ("{name: w, hosts: web01, wait_for: {timeout: 3}}", "wait_for needs one of port:"),
        (
            "{name: w, hosts: web01, wait_for: {connection: up, state: stopped}}",
            "wait_for.state goes with port:, not connection:",
        ),
        ("{name: w, hosts: web01, wait_for: {port: 'x{{ 1 }}'}}", "port 'x1' is not a port"),
        (
            "{name: w, hosts: web01, wait_for: {port: 22}, delegate_to: lb1}",
            "delegate_to is not allowed on a wait_for step",
        ),
        ("{name: w, hosts: web01, reboot: {}, retries: 2}", "retries is not allowed on a reboot"),
        (
            "{name: w, hosts: web01, run: x, rescue: [{name: r, run: y}]}",
            "rescue: belongs to a group",
        ),
        ("{name: w, hosts: web01, copy: {src: a, dest: /b}, delegate_to: lb1}", "not supported"),
    ],
)
def test_wrong_waits_and_flow_keys_are_input_errors(tmp_path, step, message):
    path = write(tmp_path, HOSTS + f"steps:\n  - {step}\n")
    with pytest.raises(InputError, match=message) as err:
        plan_of(path)
    assert str(err.value).startswith(f"{path}:8:")


# -- bad input through the CLI: exit 2, FILE:LINE, nothing run -----------------------------------


@pytest.mark.parametrize(
    "bad,where",
    [
        ("{name: bad, hosts: web, run: x, rescue: [{name: r, run: y}]}", ":5:"),
        ("{name: bad, hosts: web, delegate_to: nowhere, run: x}", ":5:"),
        ("{name: bad, local: true, reboot: {}}", ":5:"),
        ("{name: bad, local: true, hosts: web, run: x}", ":5:"),
    ],
)
def test_bad_flow_input_is_exit_2_with_file_and_line_and_nothing_runs(tmp_path: Path, bad, where):
    marker = tmp_path / "ran"
    rb = write(
        tmp_path,
        f"""
        name: bad
        hosts: {{web: {{hosts: {{w1: {{connection: local}}}}}}}}
        steps:
          - {{name: first, hosts: web, run: "touch {marker}"}}
          - {bad}
        """,
    )
    proc = runbook_cli("apply", "--yes", str(rb), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"runbook: {rb}{where}") or f"{rb}{where}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_diff_compares_delegates_and_waits(tmp_path):
    from runbook.diff.compare import diff_plans

    def planned(text: str, name: str):
        return plan_of(write(tmp_path, text, name))

    d = diff_plans(
        planned(GROUP, "a.yml"),
        planned(GROUP.replace("delegate_to: controller", "delegate_to: lb1"), "b.yml"),
    )
    note = next(s for s in d.all_steps() if s.name == "note").commands[0]
    assert [c.to_dict() for c in note.details if c.name == "delegate"] == [
        {"name": "delegate", "change": "changed", "old": "controller", "new": "lb1"}
    ]
    assert note.new.to_dict()["delegate"] == "lb1"
    d = diff_plans(
        planned(WAITS, "c.yml"), planned(WAITS.replace("timeout: 900", "timeout: 1200"), "d.yml")
    )
    (boot,) = [s for s in d.all_steps() if s.name == "boot"]
    (change,) = boot.commands
    assert change.new.wait and "timeout 1200s" in change.new.cmd
    assert "timeout 900s" in change.old.cmd
