"""Registered values have one meaning everywhere (SPEC §11), through the runner.

One stdout (trailing newlines removed) for ``until``, ``when``, templates and registers;
a register of a host that did not run the step is an error to read, except its
``status`` and through ``default()``; ``hostvars[H].NAME is defined`` is false while H
has no value. Commands run on the scripted ``FakeContext`` of ``test_runner``.
"""

from __future__ import annotations

from collections.abc import Callable

from runbook.model.command import Command, Outcome
from tests.run.test_runner import FakeContext, make, run, statuses


def printing(outputs: dict[str, str]) -> Callable[[Command], Outcome]:
    """Each step prints ``outputs[step]`` (with its newline, as commands do); any other
    step prints its rendered command."""

    def script(c: Command) -> Outcome:
        return Outcome(rc=0, stdout=(outputs.get(c.step, c.cmd) + "\n").encode())

    return script


def result_of(result, step: str, host: str):
    return next(r for r in result.results if (r.step, r.host) == (step, host))


UNTIL = """
name: until
hosts: {g: [h1]}
steps:
  - {name: first, hosts: g, run: boot-id, register: first}
  - name: same
    hosts: g
    run: boot-id
    until: stdout == first.stdout
  - name: changed
    hosts: g
    run: boot-id
    until: stdout != first.stdout
    on_failure: continue
  - name: lines
    hosts: g
    run: boot-id
    until: stdout_lines == ['b1'] and stdout_lines == first.stdout_lines
"""


def test_until_and_a_register_agree_on_stdout(tmp_path):
    """Regression: ``until`` saw the trailing newline the register strips, so
    ``stdout == first.stdout`` never held and ``stdout != boot.stdout`` held at once."""
    plan = make(tmp_path, UNTIL)
    same = dict.fromkeys(["first", "same", "changed", "lines"], "b1")
    result, _ = run(plan, FakeContext(printing(same)))
    st = statuses(result)
    assert st[("same", "h1")] == "ok"
    assert st[("lines", "h1")] == "ok"
    # The same boot id printed again: the wait for a new one has not finished.
    assert st[("changed", "h1")] == "failed"
    assert result_of(result, "changed", "h1").error == "until not met: stdout != first.stdout"


NOT_RUN = """
name: skipped
hosts: {db: [d1, d2]}
steps:
  - name: Find the LSN
    hosts: db
    when: host.name == 'd1'
    run: lsn
    register: lsn
  - name: status
    hosts: db
    run: "echo {{ lsn.status }}"
  - name: default
    hosts: db
    run: "echo lsn={{ lsn.stdout | default('none') }} defined={{ lsn.stdout is defined }}"
  - name: stdout
    hosts: db
    on_failure: continue
    run: "echo lsn={{ lsn.stdout }}"
  - name: rc
    hosts: db
    on_failure: continue
    run: "echo rc={{ hostvars['d2'].lsn.rc }}"
"""


def test_a_skipped_register_is_readable_by_status_and_default_only(tmp_path):
    plan = make(tmp_path, NOT_RUN)
    result, _ = run(plan, FakeContext(printing({"Find the LSN": "0/3000060"})))
    assert result_of(result, "status", "d2").stdout == "echo skipped\n"
    assert result_of(result, "status", "d1").stdout == "echo ok\n"
    assert result_of(result, "default", "d1").stdout == "echo lsn=0/3000060 defined=True\n"
    assert result_of(result, "default", "d2").stdout == "echo lsn=none defined=False\n"
    # lsn={{ lsn.stdout }} rendered "lsn=" silently; now the command fails, naming the
    # host and the step that skipped it.
    assert result_of(result, "stdout", "d1").stdout == "echo lsn=0/3000060\n"
    bad = result_of(result, "stdout", "d2")
    assert bad.status.value == "failed" and bad.attempts == 0
    assert "host 'd2' has no 'stdout': step 'Find the LSN' was skipped there" in bad.error
    assert "when: host.name == 'd1'" in bad.error and "rb.yml:18:" in bad.error
    rc = result_of(result, "rc", "d1")
    assert rc.status.value == "failed" and "host 'd2' has no 'rc'" in rc.error


HOSTVARS = """
name: batches
hosts: {g: [h1, h2, h3]}
steps:
  - name: rolling
    hosts: g
    serial: 1
    steps:
      - {name: mark, run: mark, register: mark}
      - name: look
        run: "echo {{ hostvars['h3'].mark is defined }} {{ hostvars['h1'].mark is defined }}"
  - name: unknown
    hosts: g
    run: "echo {{ hostvars['nohost'] is defined }}"
"""


def test_hostvars_of_a_host_with_no_value_yet_is_not_defined(tmp_path):
    plan = make(tmp_path, HOSTVARS)
    result, _ = run(plan, FakeContext(printing({})))
    looks = {r.host: r.stdout for r in result.results if r.step == "look"}
    # h3 is in the last batch: it has no mark while h1 and h2 run.
    assert looks == {"h1": "echo False True\n", "h2": "echo False True\n", "h3": "echo True True\n"}
    assert {r.stdout for r in result.results if r.step == "unknown"} == {"echo False\n"}


GROUP_STATUS = """
name: group status
hosts: {g: [h1, h2]}
steps:
  - name: group
    hosts: g
    serial: 1
    max_failures: 1
    steps:
      - {name: breaks, run: breaks}
      - {name: fine, run: fine}
"""


def test_an_inner_step_reports_its_own_status_not_its_groups(tmp_path):
    def script(c: Command) -> Outcome:
        return Outcome(rc=1 if (c.step, c.host.name) == ("breaks", "h1") else 0)

    result, rec = run(make(tmp_path, GROUP_STATUS), FakeContext(script))
    assert result.exit_code == 0
    finished = [(e["step"], e.get("batch"), e["status"]) for e in rec.of("step_finished")]
    # Batch 2 (h2) failed nowhere: its steps said "tolerated: 1 ok", the group's count.
    assert finished == [
        ("breaks", 1, "tolerated"),
        ("fine", 1, "cancelled"),  # h1 dropped out of the rest of its batch
        ("breaks", 2, "ok"),
        ("fine", 2, "ok"),
        ("group", None, "tolerated"),
    ]
