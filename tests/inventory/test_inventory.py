"""build_inventory beyond the recorded corpus: host fields from connection vars, the
errors an operator sees, inventory scripts, several sources, and lazy templates."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from runbook.errors import InventoryError, Position, TemplateError
from runbook.inventory import script as inventory_script
from runbook.inventory.build import build_inventory
from runbook.inventory.hosts import resolve_host
from runbook.templating import env as templating
from runbook.templating.lazy import TemplatedValue, resolve_templates
from tests.e2e.helpers import runbook

DATA = Path(__file__).parents[1] / "data" / "inventories"


def write(tmp_path: Path, name: str, content: str, executable: bool = False) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def build_error(*paths: Path, inline: dict[str, Any] | None = None) -> InventoryError:
    with pytest.raises(InventoryError) as info:
        build_inventory(inline or {}, [str(p) for p in paths])
    return info.value


# --- host fields ----------------------------------------------------------------------


def test_connection_vars_become_host_fields() -> None:
    hosts = build_inventory({}, [str(DATA / "ansible/connection/hosts.ini")]).hosts
    jump1 = hosts["jump1"]
    assert (jump1.address, jump1.port, jump1.user) == ("203.0.113.10", 2222, "ops")
    assert (jump1.become, jump1.become_user, jump1.proxy_jump) == (None, None, None)
    assert hosts["app1"].proxy_jump == "ops@203.0.113.10:2222"  # -o ProxyJump=...
    assert hosts["app2"].proxy_jump == "jump1"  # -J host
    assert hosts["app3"].proxy_jump == "ops@jump1"  # -Jhost, in ansible_ssh_extra_args
    assert hosts["app4"].proxy_jump == "jump1"  # -o 'ProxyJump host'
    assert hosts["app5"].proxy_jump is None  # other options only
    for name in ("app1", "app2", "app3", "app4", "app5"):
        assert (hosts[name].become, hosts[name].become_user) == (True, "deploy")  # "true"
    assert hosts["app3"].identity_file == "~/.ssh/app3"  # ansible_private_key_file
    assert hosts["app5"].identity_file == "/keys/app5"  # the ssh_ name wins, as in Ansible
    db1 = hosts["db1"]
    assert (db1.become, db1.address, db1.user) == (False, "10.0.0.5", "postgres")  # "no"


@pytest.mark.parametrize(
    ("common", "extra", "jump"),
    [
        ("-o ProxyJump=a", "-J b", "a"),  # the common args come first on ssh's command line
        ("-o StrictHostKeyChecking=no", "-o ProxyJump b", None),  # two words: not an option
        ("-oProxyJump=c,d:2222 -v", "", "c,d:2222"),
        ("-o 'proxyjump = e'", "", "e"),
        ("-o proxyjump = e", "", None),  # ssh reads `-o proxyjump`, then a host named "="
        ("-C", "-J f", "f"),
    ],
)
def test_proxy_jump_forms(tmp_path: Path, common: str, extra: str, jump: str | None) -> None:
    text = f"[web]\nw1 ansible_ssh_common_args={json.dumps(common)}"
    text += f" ansible_ssh_extra_args={json.dumps(extra)}\n" if extra else "\n"
    hosts = build_inventory({}, [str(write(tmp_path, "hosts.ini", text))]).hosts
    assert hosts["w1"].proxy_jump == jump


def test_inline_fields_win_over_ansible_vars(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[web]\nw1 ansible_host=10.0.0.1 ansible_port=2201\n")
    inline = {"web": {"hosts": {"w1": {"address": "w1.example.com"}}}}
    host = build_inventory(inline, [str(path)]).hosts["w1"]
    assert (host.address, host.port) == ("w1.example.com", 2201)


# --- where an error is reported -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "line", "col", "message"),
    [
        ("hosts.ini", "[web]\nw1 ansible_port=0\n", 2, 17, "ansible_port 0 is not a port"),
        ("hosts.ini", "[web]\nw1\n[web:vars]\nansible_ssh_port=70000\n", 4, 18, "70000"),
        ("hosts.ini", "[web]\nw1 ansible_port=ssh\n", 2, 17, "'ssh' is not a port"),
        ("hosts.ini", "[web]\nw1 ansible_become=maybe\n", 2, 19, "is not a boolean"),
        ("inv.yml", "all:\n  hosts:\n    w1:\n      ansible_port: 0\n", 4, 7, "ansible_port 0"),
        ("inv.yml", "all:\n  vars:\n    ansible_port: -1\n", 3, 5, "ansible_port -1"),
        ("inv.yml", "all:\n  vars:\n    ansible_port: true\n", 3, 5, "ansible_port True"),
        ("hosts.ini", "[web]\nw1\n[web:vars]\nansible_group_priority=high\n", 4, 24, "whole"),
    ],
)
def test_bad_connection_vars_are_errors_where_written(
    tmp_path: Path, name: str, text: str, line: int, col: int, message: str
) -> None:
    path = write(tmp_path, name, text)
    err = build_error(path)
    assert message in err.message
    assert err.position == Position(str(path), line, col)


def test_bad_port_in_group_vars_file(tmp_path: Path) -> None:
    inventory = write(tmp_path, "hosts.ini", "[web]\nw1\n")
    vars_file = write(tmp_path, "group_vars/web.yml", "---\nhttp_port: 80\nansible_port: 0\n")
    err = build_error(inventory)
    assert "ansible_port 0 is not a port number 1-65535" in err.message
    assert err.position == Position(str(vars_file), 3, 1)


def test_bad_port_in_inline_vars_points_at_the_runbook() -> None:
    positions = {("hosts", "web", "vars", "ansible_port"): Position("rb.yml", 7, 9)}
    with pytest.raises(InventoryError) as info:
        build_inventory({"web": {"hosts": ["w1"], "vars": {"ansible_port": 0}}}, [], positions)
    assert info.value.position == Position("rb.yml", 7, 9)


def test_a_bad_inventory_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[web]\nw1 ansible_port=0\n")
    proc = runbook("inventory", str(path))
    assert proc.returncode == 2
    assert proc.stderr == f"{path}:2:17: ansible_port 0 is not a port number 1-65535\n"


def test_the_implicit_localhost_takes_the_vars_of_all(tmp_path: Path) -> None:
    """As in Ansible: in no group, yet `all`'s vars apply; its connection stays local."""
    path = write(
        tmp_path, "hosts.ini", "[web]\nw1\n[all:vars]\ngreeting=hi\nansible_connection=ssh\n"
    )
    rb = write(
        tmp_path,
        "rb.yml",
        f"name: t\ninventory: {path.name}\nsteps:\n"
        "  - {name: Greet, hosts: localhost, run: 'echo {{ greeting }}'}\n",
    )
    proc = runbook("plan", str(rb))
    assert proc.returncode == 0, proc.stderr
    assert "localhost  $ echo hi\n" in proc.stdout
    assert runbook("apply", "--yes", str(rb)).returncode == 0  # local: no SSH was tried
    inv = build_inventory({}, [str(path)])
    assert inv.controller.vars["greeting"] == "hi" and inv.controller.is_local


# --- exports and scripts --------------------------------------------------------------


def test_yaml_export_with_an_empty_ungrouped(tmp_path: Path) -> None:
    """Older ansible-inventory -y wrote `ungrouped: {}`; the JSON form lists it as a child."""
    text = "all:\n  children:\n    ungrouped: {}\n    web:\n      hosts:\n        w1: {x: 1}\n"
    inv = build_inventory({}, [str(write(tmp_path, "export.yml", text))])
    assert inv.groups == {"all": ["w1"], "web": ["w1"]}
    listing = {"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped", "web"]}}
    listing["web"] = {"hosts": ["w1"]}
    inv = build_inventory({}, [str(write(tmp_path, "export.json", json.dumps(listing)))])
    assert inv.groups == {"all": ["w1"], "web": ["w1"]}
    # As in Ansible, `ungrouped` is a group even when empty: it matches no host, it is not
    # an unknown name.
    assert inv.resolve("ungrouped") == []
    assert [h.name for h in inv.resolve("ungrouped:web")] == ["w1"]


def test_script_failure_shows_its_stderr(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.sh",
        "#!/bin/sh\necho 'cannot reach the CMDB' >&2\necho 'token expired' >&2\nexit 3\n",
        executable=True,
    )
    err = build_error(path)
    assert err.message == (
        "inventory script `inv.sh --list` exited with status 3; "
        "its stderr: cannot reach the CMDB / token expired"
    )
    assert err.position == Position(str(path))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("not json", "did not print JSON (not valid JSON: Expecting value)"),
        ("[1, 2]", "expected a JSON object of groups, got list"),
        ('{"web": {"hosts": "w1"}}', "hosts of group 'web' must be a list of names"),
        ('{"web": ["w1"], "_meta": {"hostvars": []}}', "_meta.hostvars must map host names"),
        ('{"web": {"hosts": ["w1"], "vars": {"ansible_port": 0}}}', "ansible_port 0"),
    ],
)
def test_script_output_errors(tmp_path: Path, output: str, message: str) -> None:
    path = write(tmp_path, "inv.sh", f"#!/bin/sh\necho '{output}'\n", executable=True)
    assert message in build_error(path).message


def test_script_without_meta_is_asked_per_host(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    path = write(
        tmp_path,
        "inv.sh",
        f'#!/bin/sh\necho "$@" >> {log}\n'
        'if [ "$1" = --list ]; then echo \'{"web": ["w1", "w2"]}\'; '
        'else echo "{\\"who\\": \\"$2\\"}"; fi\n',
        executable=True,
    )
    inv = build_inventory({}, [str(path)])
    assert {h: inv.hosts[h].vars for h in inv.hosts} == {"w1": {"who": "w1"}, "w2": {"who": "w2"}}
    assert log.read_text().splitlines() == ["--list", "--host w1", "--host w2"]


def test_script_that_hangs_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory_script, "TIMEOUT", 0.5)
    path = write(tmp_path, "inv.sh", "#!/bin/sh\necho waiting >&2\nexec sleep 30\n", True)
    err = build_error(path)
    assert "did not finish within 0.5 s; its stderr: waiting" in err.message


def test_executable_file_without_shebang_is_read_as_text(tmp_path: Path) -> None:
    """Inventories checked out with every file executable still load, as in Ansible."""
    path = write(tmp_path, "hosts", "[web]\nw1 x=1\n", executable=True)
    assert build_inventory({}, [str(path)]).hosts["w1"].vars == {"x": 1}


def test_json_errors_have_positions(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.json", '{"all": {"hosts": {"w1": {}},\n  "vars": {,}}}\n')
    err = build_error(path)
    assert "not valid JSON" in err.message
    assert err.position == Position(str(path), 2, 12)
    dup = write(tmp_path, "dup.json", '{"web": ["w1"], "web": ["w2"]}')
    assert "duplicate key 'web'" in build_error(dup).message


# --- several sources ------------------------------------------------------------------


def test_group_vars_of_one_source_apply_to_groups_of_another(tmp_path: Path) -> None:
    first = write(tmp_path, "a/hosts.ini", "[web]\nw1 x=from-a\n")
    write(tmp_path, "a/group_vars/db.yml", "role: database\n")
    second = write(tmp_path, "b/hosts.yml", "db:\n  hosts:\n    d1:\n")
    write(tmp_path, "b/host_vars/w1.yml", "x: from-b-host-vars\n")
    inv = build_inventory({}, [str(first), str(second)])
    assert inv.hosts["d1"].vars == {"role": "database"}
    assert inv.hosts["w1"].vars == {"x": "from-b-host-vars"}


def test_group_priority_is_not_a_var(tmp_path: Path) -> None:
    text = "[a]\nh\n[b]\nh\n[a:vars]\nansible_group_priority=5\nv=a\n[b:vars]\nv=b\n"
    host = build_inventory({}, [str(write(tmp_path, "hosts.ini", text))]).hosts["h"]
    assert host.vars == {"v": "a"}  # a outranks b despite its name


# --- lazy templates -------------------------------------------------------------------


def _templated(tmp_path: Path, text: str) -> dict[str, Any]:
    path = write(tmp_path, "group_vars/all.yml", text)
    inventory = write(tmp_path, "hosts.ini", "[web]\nw1\n")
    assert path.exists()
    return build_inventory({}, [str(inventory)]).hosts["w1"].vars


def test_templates_reading_templates_render_in_order(tmp_path: Path) -> None:
    values = _templated(
        tmp_path,
        'base: /opt\nhome: "{{ base }}/app"\nbin: "{{ home }}/bin"\n'
        'paths: ["{{ bin }}", {etc: "{{ home }}/etc"}]\nplain: text\n',
    )
    context = {**values, "unrelated": "{{ never read }}"}
    render = templating.render
    assert resolve_templates(values["bin"], context, render) == "/opt/app/bin"
    assert resolve_templates(values["paths"], context, render) == [
        "/opt/app/bin",
        {"etc": "/opt/app/etc"},
    ]
    plain = values["plain"]
    assert resolve_templates(plain, context, render) is plain


def test_template_loop_names_file_and_line(tmp_path: Path) -> None:
    values = _templated(tmp_path, 'a: "{{ b }}"\nb: "x{{ c }}"\nc: "{{ a }}"\nd: "{{ d }}"\n')
    with pytest.raises(InventoryError) as info:
        resolve_templates(values["a"], values, templating.render)
    assert "variables refer to each other in a loop: b -> c -> a -> b" in info.value.message
    assert info.value.position is not None
    assert info.value.position.file == str(tmp_path / "group_vars/all.yml")
    assert info.value.position.line in (1, 2, 3)
    with pytest.raises(InventoryError, match="loop: d -> d"):
        resolve_templates(values["d"], values, templating.render)


def test_template_errors_point_into_the_vars_file(tmp_path: Path) -> None:
    values = _templated(tmp_path, "x: 1\nmsg: |\n  line one\n  {{ missing }}\n")
    with pytest.raises(TemplateError) as info:
        resolve_templates(values["msg"], values, templating.render)
    assert "'missing' is undefined" in info.value.message
    assert info.value.position == Position(str(tmp_path / "group_vars/all.yml"), 4, 1)


def test_templated_value_survives_copies() -> None:
    import copy
    import pickle

    value = TemplatedValue("{{ x }}", Position("f.yml", 3, 5))
    for clone in (copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert isinstance(clone, TemplatedValue)
        assert (clone, clone.position) == ("{{ x }}", Position("f.yml", 3, 5))
    assert json.dumps({"v": value}) == '{"v": "{{ x }}"}'


def test_resolve_host_renders_templated_connection_vars(tmp_path: Path) -> None:
    text = (
        "[web]\nw1 ansible_host='{{ prefix }}.11' ansible_port='{{ port }}' "
        "ansible_ssh_common_args='-o ProxyJump={{ jump }}'\n"
        "w2 ansible_host=10.0.0.12\n"
        "[web:vars]\nprefix=10.0.0\nport=2222\njump=bastion\n"
    )
    hosts = build_inventory({}, [str(write(tmp_path, "hosts.ini", text))]).hosts
    raw = hosts["w1"]
    assert (raw.address, raw.port, raw.proxy_jump) == ("{{ prefix }}.11", None, None)
    host = resolve_host(raw, raw.vars, templating.render)
    assert (host.address, host.port, host.proxy_jump) == ("10.0.0.11", 2222, "bastion")
    assert resolve_host(hosts["w2"], hosts["w2"].vars, templating.render) is hosts["w2"]


def test_resolve_host_checks_the_rendered_port(tmp_path: Path) -> None:
    text = "[web]\nw1 ansible_port='{{ port }}'\n[web:vars]\nport=0\n"
    host = build_inventory({}, [str(write(tmp_path, "hosts.ini", text))]).hosts["w1"]
    with pytest.raises(InventoryError, match="ansible_port '0' is not a port") as info:
        resolve_host(host, host.vars, templating.render)
    assert info.value.position == Position(str(tmp_path / "hosts.ini"), 2, 17)  # the quote


def test_inventory_listing_shows_templates_raw(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[web]\nw1 url='http://{{ inventory_hostname }}/'\n")
    proc = runbook("inventory", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hosts"]["w1"]["vars"] == {
        "url": "http://{{ inventory_hostname }}/"
    }
    assert os.path.exists(path)
