"""Every inventory of the corpus means to runbook what it means to Ansible.

``tests/data/inventories/expected/NAME.json`` is what real ``ansible-inventory --list``
(ansible-core 2.19.14) printed for each inventory, recorded once by ``record.py``; nothing
here was written by running runbook. Runbook must find the same hosts, the same members
in each group and the same vars per host, raw (``{{ }}`` unrendered), as Ansible shows
them; ``.export.json`` (``--list --export``) pins each group's own vars too. Ansible's own
exports under ``exports/`` must load unchanged and mean what the inventory they came from
means.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from runbook.errors import InventoryError
from runbook.inventory.build import build_inventory
from runbook.inventory.sources import load_inventory
from runbook.load.vault import Keyring, Vaulted, read_keyring, replace_vaulted
from runbook.templating.lazy import TemplatedValue
from tests.e2e.helpers import runbook

DATA = Path(__file__).parents[1] / "data" / "inventories"

_spec = importlib.util.spec_from_file_location("record", DATA / "record.py")
assert _spec is not None and _spec.loader is not None
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

# Where runbook knowingly differs from Ansible; each is asserted by its own test below.
REFUSED = {
    # `hosts:` written as a multi-line plain scalar: Ansible makes one host named
    # "node1 node2 node3"; runbook refuses a host name with spaces, as it does inline.
    "kubespray-sample-yml",
    # ansible_connection=network_cli: runbook reaches hosts over ssh or locally only.
    "network",
}
SHARED = sorted(set(record.CORPUS) - REFUSED)


def expected(name: str) -> dict[str, Any]:
    return json.loads((DATA / "expected" / f"{name}.json").read_text(encoding="utf-8"))


def members(listing: dict[str, Any]) -> dict[str, set[str]]:
    """Group -> every host in it, children's included, from a ``--list`` output."""
    groups = {g: v for g, v in listing.items() if g != "_meta"}
    names = set(groups) | {c for v in groups.values() for c in v.get("children", [])}

    def of(group: str, seen: frozenset[str]) -> set[str]:
        found = set(groups.get(group, {}).get("hosts", []))
        for child in groups.get(group, {}).get("children", []):
            if child not in seen:
                found |= of(child, seen | {group})
        return found

    result = {g: of(g, frozenset()) for g in names}
    result["all"] = set().union(*result.values(), listing["_meta"]["hostvars"])
    return result


def keyring(name: str) -> Keyring:
    """The vault passwords record.py gave ansible-inventory for this entry."""
    return read_keyring([record.vault_id(v) for v in record.VAULT_IDS.get(name, [])], {})


def as_ansible_lists(value: Any) -> Any:
    """A vaulted value as ``ansible-inventory --list`` prints it: a ``!vault`` string as
    ``{"__ansible_vault": ENVELOPE}``, a value of a wholly encrypted file decrypted (runbook
    keeps it a secret everywhere it shows it; here its plaintext is compared)."""
    return replace_vaulted(
        value, lambda v: v.plain if v.plain is not None else {"__ansible_vault": str(v)}
    )


def assert_same(
    path: Path, listing: dict[str, Any], *, empty_groups_kept: bool = True, name: str = ""
) -> None:
    inv = build_inventory({}, [str(path)], vault=keyring(name))
    want = members(listing)
    assert set(inv.hosts) == want["all"]
    for host, values in listing["_meta"]["hostvars"].items():
        assert as_ansible_lists(inv.hosts[host].vars) == values, host
    for host in set(inv.hosts) - set(listing["_meta"]["hostvars"]):
        assert inv.hosts[host].vars == {}, host
    got = {g: set(m) for g, m in inv.groups.items()}
    if not want.get("ungrouped"):
        want.pop("ungrouped", None)  # Ansible always lists it; runbook only when it has hosts
    if not empty_groups_kept:  # a YAML export drops empty groups
        want = {g: m for g, m in want.items() if m}
        got = {g: m for g, m in got.items() if m}
    assert got == want


@pytest.mark.parametrize("name", SHARED)
def test_same_hosts_groups_and_vars_as_ansible(name: str) -> None:
    assert_same(DATA / record.CORPUS[name], expected(name), name=name)


@pytest.mark.parametrize("name", record.EXPORTED)
def test_group_vars_as_ansible_exports_them(name: str) -> None:
    listing = expected(f"{name}.export")
    inv = load_inventory(DATA / record.CORPUS[name])
    groups = {g: v for g, v in listing.items() if g != "_meta"}
    named = set(groups) | {c for v in groups.values() for c in v.get("children", [])}
    assert set(inv.groups) | {"ungrouped"} == named | {"ungrouped"}
    for group, data in groups.items():
        assert inv.groups[group].vars == data.get("vars", {}), group
        assert set(inv.groups[group].children) - {"ungrouped"} == set(data.get("children", [])) - {
            "ungrouped"
        }
        if group != "all":  # Ansible never lists all's hosts
            assert set(inv.groups[group].hosts) == set(data.get("hosts", [])), group
    for host, values in listing["_meta"]["hostvars"].items():
        assert inv.hosts[host] == values, host


@pytest.mark.parametrize("export", sorted(record.EXPORTS))
def test_ansible_exports_load_unchanged(export: str) -> None:
    source = record.EXPORTS[export]
    assert_same(DATA / export, expected(source), empty_groups_kept=export.endswith(".json"))


def test_templates_in_files_are_marked_with_their_position() -> None:
    inv = build_inventory({}, [str(DATA / record.CORPUS["kubespray-mycluster"])])
    node1 = inv.hosts["node1"].vars
    value = node1["kube_cert_dir"]
    assert isinstance(value, TemplatedValue)
    assert value == "{{ kube_config_dir }}/ssl"
    k8s = DATA / "published/kubespray/sample/group_vars/k8s_cluster/k8s-cluster.yml"
    assert value.position.file.endswith("k8s_cluster/k8s-cluster.yml")
    assert value.position.line == _line_of(k8s, 'kube_cert_dir: "{{')
    # Inside a mapping too; a folded block scalar starts on the line after `>-`.
    assert isinstance(node1["kubeadm_patches"]["source_dir"], TemplatedValue)
    folded = node1["kube_proxy_nodeport_addresses"]
    assert isinstance(folded, TemplatedValue)
    assert folded.position.line == _line_of(k8s, "kube_proxy_nodeport_addresses: >-") + 1
    # Plain values stay plain strings.
    assert type(node1["kube_config_dir"]) is str


def test_templates_in_ini_values_are_marked() -> None:
    path = DATA / record.CORPUS["kubespray-local"]
    value = build_inventory({}, [str(path)]).hosts["node1"].vars["local_release_dir"]
    assert isinstance(value, TemplatedValue)
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert (value.position.line, value.position.col) == (1, first_line.index("{{") + 1)


def test_script_output_is_never_a_template() -> None:
    inv = build_inventory({}, [str(DATA / record.CORPUS["script-inventory"])])
    motd = inv.hosts["web1.example.com"].vars["motd"]
    assert motd == "{{ not rendered: script output }}"
    assert type(motd) is str


def test_json_export_values_are_templates_like_the_files_they_came_from() -> None:
    inv = build_inventory({}, [str(DATA / "exports/lamp_haproxy.json")])
    assert isinstance(inv.hosts["web2"].vars["iface"], TemplatedValue)


def test_multiline_yaml_host_name_is_refused_at_its_line() -> None:
    path = DATA / record.CORPUS["kubespray-sample-yml"]
    assert "node1 node2 node3" in expected("kubespray-sample-yml")["_meta"]["hostvars"]
    with pytest.raises(InventoryError) as info:
        build_inventory({}, [str(path)])
    assert "host name 'node1 node2 node3' contains whitespace" in info.value.message
    assert info.value.position is not None
    assert info.value.position.line == _line_of(path, "        node1\n")


def test_network_cli_connection_is_refused() -> None:
    with pytest.raises(InventoryError, match="connection 'network_cli' is not supported"):
        build_inventory({}, [str(DATA / record.CORPUS["network"])])


def test_cli_shows_raw_values_as_ansible_does() -> None:
    path = DATA / record.CORPUS["lamp_haproxy"]
    proc = runbook("inventory", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    want = expected("lamp_haproxy")
    assert {h: v["vars"] for h, v in shown["hosts"].items()} == want["_meta"]["hostvars"]


def test_cli_runs_an_inventory_script() -> None:
    proc = runbook("inventory", str(DATA / record.CORPUS["script-legacy"]), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["hosts"]["edge1"]["vars"] == {"ansible_host": "192.0.2.1", "tier": 3}
    assert shown["hosts"]["edge1"]["address"] == "192.0.2.1"
    assert shown["groups"]["edge"] == ["edge1", "edge2"]


def _line_of(path: Path, text: str) -> int:
    content = path.read_text(encoding="utf-8")
    return content[: content.index(text)].count("\n") + 1


def test_corpus_files_are_in_the_table() -> None:
    """A file added to the corpus without recorded Ansible output would test nothing."""
    listed = {os.path.normpath(p) for p in record.CORPUS.values()}
    inventories = {
        os.path.relpath(p, DATA)
        for p in DATA.rglob("*")
        if p.is_file()
        and "group_vars" not in p.parts
        and "host_vars" not in p.parts
        and p.parent.name not in ("expected", "exports")
        and p.name not in ("README.md", "record.py", "plan.yml")
        and not {"keys", "vars", "files"} & set(p.parts)  # passwords, vars files, lookups
        and "__pycache__" not in p.parts  # record.py's bytecode: this module imports it
    }
    assert inventories <= listed


def test_vaulted_values_stay_encrypted_until_read_and_whole_files_are_secrets() -> None:
    path = DATA / record.CORPUS["vault"]
    inv = build_inventory({}, [str(path)], vault=keyring("vault"))
    db1 = inv.hosts["db1"].vars
    assert isinstance(db1["db_password"], Vaulted) and db1["db_password"].plain is None
    assert str(db1["db_password"]).startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    assert str(db1["api_key"]).startswith("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    # A value of group_vars/all/backup.yml, which ansible-vault encrypted whole: decrypted
    # when read, and a secret; its number stays a number, as in Ansible's listing.
    token = db1["backup_token"]
    assert isinstance(token, Vaulted) and token.plain == "bk-token-abcdef123"
    assert str(token) == "********" and db1["backup_port"] == 9000
    with pytest.raises(InventoryError, match="no vault password is given") as info:
        build_inventory({}, [str(path)])
    assert info.value.position is not None
    assert info.value.position.file.endswith("group_vars/all/backup.yml")


def test_the_cli_lists_vaulted_values_as_ansible_inventory_does() -> None:
    path = DATA / record.CORPUS["vault"]
    ids = [a for v in record.VAULT_IDS["vault"] for a in ("--vault-id", record.vault_id(v))]
    proc = runbook("inventory", str(path), "--format", "json", *ids)
    assert proc.returncode == 0, proc.stderr
    shown = {h: v["vars"] for h, v in json.loads(proc.stdout)["hosts"].items()}
    want = expected("vault")["_meta"]["hostvars"]
    assert shown["db2"]["db2_only"] == want["db2"]["db2_only"]  # {"__ansible_vault": ...}
    assert shown["db1"]["db_password"] == want["db1"]["db_password"]
    assert shown["db1"]["backup_token"] == "********"  # a secret: never shown
    assert "bk-token" not in proc.stdout and "s3cret" not in proc.stdout


def test_lookups_in_inventory_values_render_when_read() -> None:
    """mitogen's ``ansible_user: "{{ lookup('pipe', 'whoami') }}"`` plans as the user
    who plans; a ``file`` lookup reads beside the inventory that holds it."""
    import getpass

    path = DATA / record.CORPUS["mitogen-default"]
    rb_dir = path.parent
    proc = runbook("inventory", str(path), "--format", "json")
    assert (
        json.loads(proc.stdout)["hosts"]["target"]["vars"]
        == (expected("mitogen-default")["_meta"]["hostvars"]["target"])
    )  # shown raw, as ansible-inventory shows it
    plan = runbook(
        "plan", "--format", "json", "-i", str(path), str(DATA / "ansible/lookups/plan.yml"),
        cwd=rb_dir,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    commands = {c["host"]: c for s in planned["steps"] for b in s["batches"] for c in b}
    assert planned["hosts"]["target"]["user"] == getpass.getuser()
    deploy = (DATA / "ansible/lookups/files/deploy.pub").read_text().strip()
    assert commands["web1"]["cmd"] == f"echo {deploy!r} 'built b-20261206.4 by nobody'"
