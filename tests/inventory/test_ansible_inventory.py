"""Ansible inventory parsing: a corpus of real-world-shaped inventories, then error cases.

Every expected value below was written by reading the inventory file, not by running the
parser. The corpus was also cross-checked once, by hand, against `ansible-inventory
--list --export` from ansible-core 2.19 (identical structure and vars), so these files
pin Ansible's semantics, not only ours.
"""

from __future__ import annotations

import random
import shlex
from pathlib import Path

import pytest

from runbook.errors import InventoryError, Position
from runbook.inventory.graph import RawGroup, RawInventory, effective_members
from runbook.inventory.ini import shell_tokens
from runbook.inventory.sources import load_inventory

DATA = Path(__file__).parents[1] / "data" / "inventories"

SEGMENTS = [f"sdw{i}" for i in range(1, 9)]


def load(name: str) -> RawInventory:
    return load_inventory(DATA / name)


def direct(inv: RawInventory) -> dict[str, list[str]]:
    """Group name -> direct hosts, for compact whole-inventory assertions."""
    return {name: g.hosts for name, g in inv.groups.items()}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def load_error(path: Path) -> InventoryError:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return info.value


# --- the corpus ---------------------------------------------------------------------


class TestGreenplum:
    """A coordinator, its standby and sdw[1:8] segments, in INI and in YAML."""

    @pytest.mark.parametrize("name", ["greenplum.ini", "greenplum.yml"])
    def test_structure(self, name: str) -> None:
        inv = load(name)
        assert list(inv.hosts) == ["cdw", "scdw", *SEGMENTS]
        assert direct(inv) == {
            "all": [],
            "coordinator": ["cdw"],
            "standby": ["scdw"],
            "segments": SEGMENTS,
            "gpdb": [],
        }
        # Groups are kept in order of first appearance; YAML names gpdb before its children.
        if name.endswith(".ini"):
            assert list(inv.groups) == ["all", "coordinator", "standby", "segments", "gpdb"]
        else:
            assert list(inv.groups) == ["all", "gpdb", "coordinator", "standby", "segments"]
        assert inv.groups["gpdb"].children == ["coordinator", "standby", "segments"]
        assert inv.groups["all"].children == ["gpdb"]
        assert "ungrouped" not in inv.groups  # every host is in a group
        assert effective_members(inv, "gpdb") == ["cdw", "scdw", *SEGMENTS]
        assert effective_members(inv, "segments") == SEGMENTS
        assert effective_members(inv, "all") == ["cdw", "scdw", *SEGMENTS]

    @pytest.mark.parametrize("name", ["greenplum.ini", "greenplum.yml"])
    def test_vars(self, name: str) -> None:
        inv = load(name)
        assert inv.groups["all"].vars == {
            "ansible_user": "gpadmin",
            "gphome": "/usr/local/greenplum-db-7.1.0",
        }
        # INI: the quotes are Python literal syntax, so the value is the plain string.
        assert inv.groups["segments"].vars == {
            "data_dirs": "/data1/primary /data2/primary",
            "mirror_port_base": 7000,
        }
        assert inv.groups["gpdb"].vars == {}
        assert inv.hosts["cdw"] == {"ansible_host": "10.0.0.10"}
        assert inv.hosts["scdw"] == {"ansible_host": "10.0.0.11"}
        assert all(inv.hosts[h] == {} for h in SEGMENTS)

    def test_ini_positions(self) -> None:
        inv = load("greenplum.ini")
        file = str(DATA / "greenplum.ini")
        # All eight come from the range on line 11.
        assert inv.host_positions["sdw1"] == Position(file, 11, 1)
        assert inv.host_positions["sdw8"] == Position(file, 11, 1)
        assert inv.host_positions["cdw"] == Position(file, 5, 1)
        assert inv.groups["segments"].position == Position(file, 10, 1)
        assert inv.groups["gpdb"].position == Position(file, 17, 1)


class TestWebstack:
    """Ungrouped hosts, a host in several groups, children of children, INI quoting."""

    def test_groups(self) -> None:
        inv = load("webstack.ini")
        assert list(inv.hosts) == [
            "bastion.example.com",
            "monitor01.example.com",
            "lb1.example.com",
            "lb2.example.com",
            "web1.example.com",
            "web2.example.com",
            "web3.example.com",
            "db1.example.com",
            "db2.example.com",
        ]
        assert direct(inv) == {
            "all": [],
            # monitor01 is listed before any section but is also in [apache]: not ungrouped.
            "ungrouped": ["bastion.example.com"],
            "loadbalancers": ["lb1.example.com", "lb2.example.com"],
            "apache": ["web1.example.com", "web2.example.com", "monitor01.example.com"],
            "nginx": ["web3.example.com", "web1.example.com"],
            "web": [],
            "prod": [],
            "db": ["db1.example.com", "db2.example.com"],
        }
        assert list(inv.groups) == [
            "all",
            "ungrouped",
            "loadbalancers",
            "apache",
            "nginx",
            "web",
            "prod",
            "db",
        ]
        assert inv.groups["web"].children == ["apache", "nginx"]
        assert inv.groups["prod"].children == ["loadbalancers", "web", "db"]
        assert inv.groups["all"].children == ["ungrouped", "prod"]

    def test_effective_members(self) -> None:
        inv = load("webstack.ini")
        web = ["web1.example.com", "web2.example.com", "monitor01.example.com", "web3.example.com"]
        assert effective_members(inv, "web") == web
        assert effective_members(inv, "prod") == [
            "lb1.example.com",
            "lb2.example.com",
            *web,
            "db1.example.com",
            "db2.example.com",
        ]
        assert effective_members(inv, "all") == [
            "bastion.example.com",
            *effective_members(inv, "prod"),
        ]

    def test_host_vars(self) -> None:
        hosts = load("webstack.ini").hosts
        assert hosts["bastion.example.com"] == {"ansible_port": 2222, "ansible_user": "jump"}
        assert hosts["monitor01.example.com"] == {}
        assert hosts["lb1.example.com"] == {}  # "# primary" is a comment
        assert hosts["lb2.example.com"] == {"ansible_port": 2201, "keepalived_priority": 90}
        assert hosts["web1.example.com"] == {"http_port": 8080, "tls": True}
        assert hosts["web2.example.com"] == {"http_port": 8080, "tls": False}
        assert hosts["web3.example.com"] == {"worker_processes": 4, "listen": [80, 443]}
        # Quoted twice keeps the '#'; unquoted, '#' starts a comment mid-word (as Ansible).
        assert hosts["db1.example.com"] == {"mysecret": "03#pa33w0rd", "note": "unquoted"}
        assert hosts["db2.example.com"] == {"role": "replica node"}

    def test_group_vars(self) -> None:
        groups = load("webstack.ini").groups
        assert groups["web"].vars == {
            "http_port": 80,
            "document_root": "/srv/www",
            "motd": "managed by runbook",
            "enabled": "true",  # not a Python literal: stays a string, as in Ansible
        }
        assert groups["prod"].vars == {"env": "production"}
        assert groups["apache"].vars == {}

    def test_positions(self) -> None:
        inv = load("webstack.ini")
        file = str(DATA / "webstack.ini")
        assert inv.host_positions["bastion.example.com"] == Position(file, 3, 1)
        assert inv.host_positions["lb2.example.com"] == Position(file, 8, 1)
        # First appearance wins: monitor01 before any section.
        assert inv.host_positions["monitor01.example.com"] == Position(file, 4, 1)
        assert inv.groups["ungrouped"].position == Position(file, 3, 1)


def test_ranges() -> None:
    inv = load("ranges.ini")
    assert direct(inv) == {
        "all": [],
        "db": [f"db{i:02d}.example.com" for i in range(1, 11)],
        "compute": [
            "node-a",
            "node-b",
            "node-c",
            "node-d",
            "node-e",
            "node-f",
            "gpu1",
            "gpu3",
            "gpu5",
            "gpu7",
            "gpu9",
        ],
        "rack": ["r1-n01", "r1-n02", "r1-n03", "r2-n01", "r2-n02", "r2-n03"],
        "spares": ["spare0", "spare1", "spare2"],  # an empty begin means 0
    }
    assert inv.hosts["gpu5"] == {"gpu": True}
    assert inv.hosts["node-c"] == {}
    assert inv.groups["all"].children == ["db", "compute", "rack", "spares"]


class TestSiteYaml:
    """YAML: three levels, vars at each, a host in two groups, ranges, anchors."""

    def test_structure(self) -> None:
        inv = load("site.yml")
        web = ["web01.example.com", "web02.example.com", "web03.example.com"]
        assert list(inv.hosts) == ["jumphost", *web, *(f"pg{i}.example.com" for i in (1, 2, 3))]
        assert direct(inv) == {
            "all": ["jumphost"],
            "ungrouped": ["jumphost"],  # only under all:, so ungrouped as in Ansible
            "webservers": web,
            "dbservers": [],
            "primary": ["pg1.example.com"],
            "replicas": ["pg2.example.com", "pg3.example.com"],
            "monitoring": ["web01.example.com", "pg1.example.com"],
        }
        assert inv.groups["all"].children == ["ungrouped", "webservers", "dbservers", "monitoring"]
        assert inv.groups["dbservers"].children == ["primary", "replicas"]
        assert effective_members(inv, "dbservers") == [
            "pg1.example.com",
            "pg2.example.com",
            "pg3.example.com",
        ]
        assert effective_members(inv, "all") == list(inv.hosts)

    def test_vars(self) -> None:
        inv = load("site.yml")
        proxy = {"host": "proxy.example.com", "port": 3128}
        assert inv.groups["all"].vars == {"ntp_server": "ntp.example.com", "ansible_user": "deploy"}
        assert inv.groups["webservers"].vars == {"http_port": 80, "proxy": proxy}
        assert inv.groups["monitoring"].vars == {"proxy": proxy}  # an alias
        assert inv.groups["dbservers"].vars == {"pg_version": 16}
        assert inv.groups["replicas"].vars == {"hot_standby": True}
        assert inv.groups["primary"].vars == {}
        assert inv.hosts["jumphost"] == {"ansible_host": "203.0.113.5"}
        assert inv.hosts["web02.example.com"] == {"http_port": 8080}
        # pg1 appears twice; its vars from both places merge.
        assert inv.hosts["pg1.example.com"] == {"pg_role": "primary", "exporter": "postgres"}
        assert inv.hosts["pg2.example.com"] == {"pg_role": "replica", "lag_alert_mb": 64}
        assert inv.hosts["pg3.example.com"] == {}

    def test_positions(self) -> None:
        inv = load("site.yml")
        file = str(DATA / "site.yml")
        assert inv.host_positions["pg2.example.com"] == Position(file, 27, 13)
        assert inv.host_positions["web02.example.com"] == Position(file, 12, 9)
        assert inv.groups["webservers"].position == Position(file, 10, 5)
        assert inv.groups["replicas"].position == Position(file, 25, 9)
        assert inv.groups["all"].position == Position(file, 2, 1)


def test_group_vars_and_host_vars_dirs() -> None:
    inv = load("vars_dirs/hosts.ini")
    assert direct(inv) == {"all": [], "app": ["app1", "app2"], "db": ["db1", "db2"], "cluster": []}
    assert effective_members(inv, "cluster") == ["app1", "app2", "db1", "db2"]
    assert inv.groups["all"].vars == {"timezone": "UTC", "ntp": "pool.ntp.org"}
    # group_vars/app (no extension) is found first, so app.yml is never read; its vars
    # replace the inline [app:vars] key by key.
    assert inv.groups["app"].vars == {"app_port": 9000, "log_level": "info"}
    # group_vars/db/: 10-main.yml, 20-tuning.yaml, sub/30-extra.json in sorted order;
    # .hidden.yml, the ~ backup and README.md are skipped.
    assert inv.groups["db"].vars == {"pg_version": 15, "max_connections": 500, "extra": True}
    assert inv.groups["cluster"].vars == {}
    assert "unknown" not in inv.groups  # group_vars for a group the inventory lacks
    assert inv.hosts["app1"] == {"app_port": 9001, "tier": "front", "ansible_host": "10.1.0.1"}
    assert inv.hosts["app2"] == {}
    assert inv.hosts["db1"] == {"ansible_host": "10.1.0.2", "shared_buffers": "4GB"}
    assert inv.hosts["db2"] == {"replica": True}


def test_kubespray_layout() -> None:
    inv = load("kubespray.yaml")
    nodes = ["node1", "node2", "node3", "node4"]
    assert list(inv.hosts) == nodes
    assert direct(inv) == {
        "all": nodes,
        "kube_control_plane": ["node1", "node2"],
        "kube_node": ["node3", "node4"],
        "etcd": ["node1", "node2", "node3"],
        "k8s_cluster": [],
        "calico_rr": [],  # `hosts: {}` declares an empty group
    }
    assert inv.groups["all"].children == [
        "kube_control_plane",
        "kube_node",
        "etcd",
        "k8s_cluster",
        "calico_rr",
    ]
    assert inv.groups["k8s_cluster"].children == ["kube_control_plane", "kube_node"]
    assert effective_members(inv, "k8s_cluster") == nodes
    assert effective_members(inv, "calico_rr") == []
    assert inv.hosts["node3"] == {
        "ansible_host": "192.168.10.13",
        "ip": "192.168.10.13",
        "access_ip": "192.168.10.13",
    }


def test_ini_without_extension() -> None:
    inv = load("ini_noext/hosts")
    assert direct(inv) == {
        "all": ["alpha.example.com"],
        # [ungrouped] members first, then hosts that are only in [all].
        "ungrouped": ["stray.example.com", "alpha.example.com"],
        "edge": [
            "2001:db8::10",
            "fe80::1",
            "edge-a.example.com",
            "edge-b.example.com",
            "edge-c.example.com",
        ],
    }
    assert inv.hosts["2001:db8::10"] == {"ansible_port": 2222, "ansible_user": "admin"}
    assert inv.hosts["fe80::1"] == {}  # a bare IPv6 address has no port
    assert inv.groups["edge"].vars == {
        "limits": {"nofile": 65536, "nproc": 4096},
        "packages": ["haproxy", "keepalived"],
    }
    assert inv.groups["all"].children == ["ungrouped", "edge"]


def test_yaml_without_extension_and_without_all() -> None:
    inv = load("yaml_noext/inventory")
    assert direct(inv) == {"all": [], "web": ["w1", "w2"], "db": ["d1"]}  # `hosts: d1`
    assert inv.groups["all"].children == ["web", "db"]
    assert inv.groups["all"].position is None  # implicit
    assert inv.groups["db"].vars == {"backup": True}  # YAML 1.1 `yes`
    assert effective_members(inv, "all") == ["w1", "w2", "d1"]


def test_json_inventory() -> None:
    inv = load("network.json")
    assert direct(inv) == {
        "all": [],
        "routers": ["rtr1", "rtr2"],
        "switches": ["sw1", "sw2", "sw3"],
    }
    assert inv.hosts == {
        "rtr1": {"ansible_network_os": "ios"},
        "rtr2": {},
        "sw1": {},
        "sw2": {},
        "sw3": {},
    }
    assert inv.groups["switches"].vars == {"vlan": 10}
    assert inv.groups["all"].vars == {"ansible_connection": "network_cli"}


EMPTY_GROUPS_JSON = """{
    "_meta": {"hostvars": {"web1": {"role": "web"}}},
    "all": {"children": ["ungrouped", "web", "db"]},
    "ungrouped": {},
    "db": {"hosts": []},
    "web": {"hosts": ["web1"]}
}
"""
EMPTY_GROUPS_YAML = (
    "all:\n  children:\n    ungrouped: {}\n    db: {}\n"
    "    web:\n      hosts:\n        web1: {role: web}\n"
)


@pytest.mark.parametrize(
    ("name", "text"), [("export.json", EMPTY_GROUPS_JSON), ("export.yml", EMPTY_GROUPS_YAML)]
)
def test_empty_groups_of_an_export_are_groups_never_hosts(
    tmp_path: Path, name: str, text: str
) -> None:
    inv = load_inventory(write(tmp_path, name, text))
    assert set(inv.hosts) == {"web1"}
    assert inv.hosts["web1"] == {"role": "web"}
    assert inv.groups["db"].hosts == [] and "ungrouped" not in inv.hosts


def test_yaml_anchors_and_merge_keys() -> None:
    inv = load("anchors.yml")
    assert direct(inv) == {
        "all": [],
        "blue": ["blue1", "blue2"],
        "green": ["green1", "green2"],
        "canary": ["blue1"],
        "canary_green": ["blue1"],  # hosts merged in from canary via <<
        "rollout": [],
    }
    assert inv.groups["blue"].vars == {"release": "2024.06", "retries": 3}
    assert inv.groups["green"].vars == {"release": "2024.06", "retries": 5}
    assert inv.groups["canary"].vars == {"weight": 5}
    assert inv.groups["canary_green"].vars == {"weight": 10}  # own key beats merged one
    assert effective_members(inv, "rollout") == ["blue1", "blue2", "green1", "green2"]


def test_loading_is_deterministic() -> None:
    assert load("webstack.ini") == load("webstack.ini")
    assert load("site.yml") == load("site.yml")


# --- smaller behaviours ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("22", 22),
        ("2.5", 2.5),
        ("True", True),
        ("true", "true"),
        ("None", None),
        ("'22'", 22),  # shlex removes the quotes first, as in Ansible
        ("\"'22'\"", "22"),
        ('"a b"', "a b"),
        ("{'k':1}", "{k:1}"),  # shlex ate the inner quotes: no longer a literal
        ("\"{'k': 1}\"", {"k": 1}),
        ("(1,2)", [1, 2]),
        ("1+2j", "1+2j"),
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_ini_host_var_values(tmp_path: Path, text: str, value: object) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", f"[web]\nweb1 v={text}\n"))
    assert inv.hosts["web1"] == {"v": value}


def test_host_line_split_matches_shlex() -> None:
    """The fast path for plain lines must split exactly as Ansible's shlex call does."""
    rng = random.Random(20240611)
    alphabet = " \t ab=1#\"'\\:[]\xa0"
    for _ in range(3000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        try:
            expected: list[str] | None = shlex.split(line, comments=True)
        except ValueError:
            expected = None
        try:
            got: list[str] | None = [t for _, t in shell_tokens(line, Position("f", 1))]
        except InventoryError:
            got = None
        assert got == expected, repr(line)


def test_ini_vars_section_keeps_whole_value(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.ini",
            "[web]\nweb1\n[web:vars]\nopts = -x -y  \nport=22 # note\nname='web tier'\nempty=\n",
        )
    )
    assert inv.groups["web"].vars == {"opts": "-x -y", "port": 22, "name": "web tier", "empty": ""}


def test_ini_crlf_bom_and_tabs(tmp_path: Path) -> None:
    text = "\ufeff[web]\r\n\tweb1\tport=1\r\n[web:vars]\r\nx=1\r\n"
    inv = load_inventory(write(tmp_path, "hosts.ini", text))
    assert inv.hosts == {"web1": {"port": 1}}
    assert inv.groups["web"].vars == {"x": 1}
    assert inv.host_positions["web1"].line == 2
    assert inv.host_positions["web1"].col == 2


def test_ini_host_port_and_same_host_twice(tmp_path: Path) -> None:
    text = "[a]\nh1:2200 x=1\n[b]\nh1 y=2\n[a]\nh1 x=3\n"
    inv = load_inventory(write(tmp_path, "hosts.ini", text))
    assert inv.hosts == {"h1": {"ansible_port": 2200, "x": 3, "y": 2}}
    assert direct(inv) == {"all": [], "a": ["h1"], "b": ["h1"]}


def test_yaml_host_with_port_and_string_children(tmp_path: Path) -> None:
    text = (
        "all:\n  children:\n    web:\n      hosts:\n        'web1:2222':\n"
        "    prod:\n      children: web\n"
    )
    inv = load_inventory(write(tmp_path, "inv.yml", text))
    assert inv.hosts == {"web1": {"ansible_port": 2222}}
    assert inv.groups["prod"].children == ["web"]


def test_yaml_sniffed_only_when_it_looks_like_an_inventory(tmp_path: Path) -> None:
    # A bare host list is valid YAML (a string), but it is an INI inventory.
    inv = load_inventory(write(tmp_path, "hosts", "web1\nweb2 x=1\n"))
    assert direct(inv) == {"all": [], "ungrouped": ["web1", "web2"]}
    assert inv.groups["all"].children == ["ungrouped"]


def test_empty_ini(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", "# nothing yet\n"))
    assert inv == RawInventory()
    assert effective_members(inv, "all") == []


def test_effective_members_all_without_an_all_group() -> None:
    inv = RawInventory(hosts={"h1": {}, "h2": {}}, groups={"g": RawGroup("g", hosts=["h2"])})
    assert effective_members(inv, "all") == ["h1", "h2"]


def test_effective_members_unknown_group() -> None:
    with pytest.raises(InventoryError, match="no group 'nope'"):
        effective_members(load("ranges.ini"), "nope")


def test_effective_members_survives_a_hand_built_cycle() -> None:
    inv = RawInventory(
        hosts={"h1": {}, "h2": {}},
        groups={
            "a": RawGroup("a", hosts=["h1"], children=["b"]),
            "b": RawGroup("b", hosts=["h2", "h1"], children=["a"]),
        },
    )
    assert effective_members(inv, "a") == ["h1", "h2"]


# --- errors ---------------------------------------------------------------------------


def test_cycle_ini_names_the_cycle_and_the_closing_line(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[a:children]\nb\n[b:children]\nc\n[c:children]\na\n")
    err = load_error(path)
    assert err.position == Position(str(path), 6, 1)
    assert "a -> b -> c -> a" in str(err)
    assert str(err).startswith(f"{path}:6:1: ")


def test_self_cycle(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "hosts.ini", "[a]\nh\n[a:children]\na\n"))
    assert "a -> a" in err.message
    assert err.position is not None and err.position.line == 4


def test_cycle_yaml(tmp_path: Path) -> None:
    text = "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n"
    text += "            a:\n"
    path = write(tmp_path, "inv.yml", text)
    err = load_error(path)
    assert "a -> b -> a" in err.message
    assert err.position == Position(str(path), 7, 13)


def test_recursive_yaml_alias_is_a_cycle_not_a_hang(tmp_path: Path) -> None:
    text = "all:\n  children: &kids\n    a:\n      children: *kids\n"
    err = load_error(write(tmp_path, "inv.yml", text))
    assert "a -> a" in err.message


def test_all_cannot_be_a_child(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "hosts.ini", "[web]\nw\n[web:children]\nall\n"))
    assert "'all' cannot be a child of 'web'" in err.message
    assert err.position is not None and err.position.line == 4


@pytest.mark.parametrize(
    ("pattern", "col", "message"),
    [
        ("web[5:1]", 4, "is empty: 5 > 1"),
        ("web[f:a]", 4, "is empty"),
        ("web[1:]", 4, "has no end"),
        ("web[01:100]", 4, "same width"),
        ("web[1:x]", 4, "two numbers or two single letters"),
        ("web[1:4:0]", 4, "step must be a positive integer"),
        ("web[1:4:-1]", 4, "step must be a positive integer"),
        ("web[1]", 4, "[begin:end]"),
        ("web[1:4", 4, "'[' without a matching ']'"),
        ("web1]", 5, "']' without a matching '['"),
        ("r[1:2]-n[3:1]", 9, "is empty"),
        ("h[0:999999]", 2, "more than 100000 hosts"),
    ],
)
def test_bad_range(tmp_path: Path, pattern: str, col: int, message: str) -> None:
    path = write(tmp_path, "hosts.ini", f"[web]\n  {pattern} x=1\n")
    err = load_error(path)
    assert message in err.message
    assert err.position == Position(str(path), 2, col + 2)


def test_bad_range_in_yaml_points_into_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yml", "all:\n  hosts:\n    sdw[8:1]:\n")
    err = load_error(path)
    assert "is empty" in err.message
    assert err.position == Position(str(path), 3, 8)


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("[web]\nweb1 ansible_port\n", 2, 6, "expected key=value after host 'web1'"),
        ("[web]\nweb1 =x\n", 2, 6, "empty variable name"),
        ('[web]\nweb1 motd="unclosed\n', 2, 6, "no closing quotation"),
        ("[web]\nweb1:\n", 2, 5, "ends in ':'"),
        ("[web]\nweb1:ssh\n", 2, 6, "is not a number 1-65535"),
        ("[web]\nweb1:70000\n", 2, 6, "is not a number 1-65535"),
        ("[web]\nh\n---\n", 3, 1, "YAML document marker"),
        ("[web:vras]\nweb1\n", 1, 1, "unknown type 'vras'"),
        ("[bad group]\nweb1\n", 1, 1, "invalid section header"),
        ("[web]\nw\n[web:vars]\nhttp_port: 80\n", 4, 1, "expected key=value in [web:vars]"),
        ("[web]\nw\n[web:vars]\n  bad key=1\n", 4, 3, "invalid variable name 'bad key'"),
        ("[web]\nw\n[p:children]\nweb extra\n", 4, 1, "one group name per line"),
        ("[web]\nw\n[prod:children]\nweb\nwebb\n", 5, 1, "lists group 'webb', which is never"),
        ("[web]\nw\n[wbe:vars]\nx=1\n", 3, 1, "section [wbe:vars] is for group 'wbe'"),
    ],
)
def test_bad_ini_line(tmp_path: Path, text: str, line: int, col: int, message: str) -> None:
    path = write(tmp_path, "hosts.ini", text)
    err = load_error(path)
    assert message in err.message
    assert err.position == Position(str(path), line, col)


def test_vars_section_then_declaration_is_fine(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", "[web:vars]\nx=1\n[web]\nw\n"))
    assert inv.groups["web"].vars == {"x": 1}
    assert inv.groups["web"].hosts == ["w"]


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("all:\n  hosts:\n    - web1\n", 3, 5, "must be a mapping, not a list"),
        ("all:\n  host:\n    web1:\n", 2, 3, "unexpected key 'host' in group 'all'"),
        ("all:\n  hosts:\n    web1:\n    web1:\n", 4, 5, "duplicate key 'web1' (first at line 3)"),
        ("all:\n  hosts:\n    web1: 22\n", 3, 11, "must map to its vars"),
        ("all:\n  vars: [1, 2]\n", 2, 9, "vars of group 'all' must be a mapping"),
        ("all:\n  children:\n    web: [a]\n", 3, 10, "group 'web' must be a mapping"),
        ("all:\n  children:\n    my web:\n", 3, 5, "contains whitespace"),
        ("plugin: aws_ec2\nregions: [us-east-1]\n", 1, 1, "inventory plugin configuration"),
        ("all:\n  vars:\n    x: !!python/object/apply:os.system [id]\n", 3, 8, "plain YAML and"),
        ("all:\n  vars:\n    pw: !vault [a, b]\n", 3, 9, "!vault"),
        ("all:\n  hosts:\n    web1:\n   bad: indent\n", 4, 4, "not valid YAML"),
    ],
)
def test_bad_yaml(tmp_path: Path, text: str, line: int, col: int, message: str) -> None:
    path = write(tmp_path, "inv.yml", text)
    err = load_error(path)
    assert message in err.message
    assert err.position == Position(str(path), line, col)


def test_empty_yaml(tmp_path: Path) -> None:
    assert "empty YAML inventory" in load_error(write(tmp_path, "inv.yml", "# none\n")).message


@pytest.mark.parametrize("name", ["hosts.ini", "inv.yml"])
def test_non_utf8_inventory(tmp_path: Path, name: str) -> None:
    body = b"[web]\nw\xe9b1\n" if name.endswith(".ini") else b"all:\n  hosts:\n    w\xe9b1:\n"
    path = write(tmp_path, name, body)
    err = load_error(path)
    assert "not valid UTF-8 (byte 0xe9)" in err.message
    assert err.position == Position(
        str(path), 2 if name.endswith(".ini") else 3, 2 if name.endswith(".ini") else 6
    )


def test_non_utf8_vars_file(tmp_path: Path) -> None:
    inv_path = write(tmp_path, "hosts.ini", "[web]\nw\n")
    vars_path = write(tmp_path, "group_vars/web.yml", b"motd: caf\xe9\n")
    err = load_error(inv_path)
    assert err.position == Position(str(vars_path), 1, 10)


def test_vault_encrypted_files(tmp_path: Path) -> None:
    vault = "$ANSIBLE_VAULT;1.1;AES256\n6162636465\n"
    assert "ansible-vault" in load_error(write(tmp_path, "a/hosts", vault)).message
    write(tmp_path, "b/hosts.ini", "[web]\nw\n")
    write(tmp_path, "b/host_vars/w.yml", vault)
    err = load_error(tmp_path / "b/hosts.ini")
    assert "ansible-vault" in err.message
    assert err.position == Position(str(tmp_path / "b/host_vars/w.yml"), 1, 1)


@pytest.mark.parametrize(
    ("name", "content", "message", "line"),
    [
        ("group_vars/web.yml", "- a\n- b\n", "must be a mapping", 1),
        ("group_vars/web.yml", "a: 1\n b: 2\n", "not valid YAML", 2),
        ("group_vars/web.json", '{"a": 1,}\n', "not valid JSON", 1),
        ("host_vars/w/x.yml", "x: !!python/name:os.system\n", "plain YAML and", 1),
    ],
)
def test_bad_vars_file(tmp_path: Path, name: str, content: str, message: str, line: int) -> None:
    inv_path = write(tmp_path, "hosts.ini", "[web]\nw\n")
    write(tmp_path, name, content)
    err = load_error(inv_path)
    assert message in err.message
    assert err.position is not None
    assert err.position.file == str(tmp_path / name)
    assert err.position.line == line


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "not found" in load_error(tmp_path / "nope.ini").message
    assert "is a directory" in load_error(tmp_path).message


@pytest.mark.parametrize(
    "text",
    [
        *("2200", "0", "00", "0755", "1_000", "9" * 25, "-3", "+4", "1.5", "10.0", "1e5", ".5"),
        *("/data/x", "node1", "192.0.2.1", "1.2.3", "1.2 .e5", "~/x", "$HOME", "@x", "a=b"),
        *("True", "true", "None", "Nonesuch", "Foo", "b'x'", "rb'x'", "u'x'", "f'x'"),
        *('"x"', "'a'", "[1, 2]", "{1: 2}", "(1,)", "{'k': [1]}", " 5", " /x", "\t7", "", " "),
    ],
)
def test_an_ini_value_is_read_as_literal_eval_reads_it(text: str) -> None:
    """The shortcuts for numbers, paths and names give what ``ast.literal_eval`` gives."""
    import ast

    from runbook.inventory.ini import _literal, _plain

    try:
        expected = _plain(ast.literal_eval(text), text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        expected = text
    got = _literal(text)
    assert (got, type(got)) == (expected, type(expected))
