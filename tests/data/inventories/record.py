"""Record what real Ansible shows for each inventory of the corpus (run by hand, once).

    python -m venv /tmp/ansible-venv && /tmp/ansible-venv/bin/pip install ansible-core
    python tests/data/inventories/record.py /tmp/ansible-venv/bin/ansible-inventory

Writes ``expected/NAME.json`` (``ansible-inventory --list``) and, for inventories whose
group vars matter, ``expected/NAME.export.json`` (``--list --export``); writes the export
files under ``exports/`` that runbook must load unchanged; and checks that Ansible itself
reads each YAML export back as the same inventory. ansible-inventory runs from an empty
directory so that no playbook-adjacent group_vars/ sneaks in. Not run by the test suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> inventory, relative to this directory. Tests read the same table.
CORPUS = {
    "kubespray-sample-ini": "published/kubespray/sample/inventory.ini",
    "kubespray-sample-yml": "published/kubespray/sample/inventory.yml",
    "kubespray-local": "published/kubespray/local/hosts.ini",
    "kubespray-mycluster": "ansible/mycluster/inventory.ini",
    "lamp_haproxy": "published/ansible-examples/lamp_haproxy/hosts",
    "lamp_simple": "published/ansible-examples/lamp_simple/hosts",
    "tomcat-standalone": "published/ansible-examples/tomcat-standalone/hosts",
    "mongodb": "published/ansible-examples/mongodb/hosts",
    "precedence": "ansible/precedence/hosts.ini",
    "connection": "ansible/connection/hosts.ini",
    "script-inventory": "ansible/scripts/inventory.py",
    "script-legacy": "ansible/scripts/legacy.sh",
    "greenplum-ini": "greenplum.ini",
    "greenplum-yml": "greenplum.yml",
    "webstack": "webstack.ini",
    "ranges": "ranges.ini",
    "site": "site.yml",
    "kubespray-layout": "kubespray.yaml",
    "network": "network.json",
    "anchors": "anchors.yml",
    "ini-noext": "ini_noext/hosts",
    "yaml-noext": "yaml_noext/inventory",
    "vars-dirs": "vars_dirs/hosts.ini",
    "mitogen-default": "published/mitogen/default.hosts",
    "vault": "ansible/vault/hosts.ini",
    "lookups": "ansible/lookups/hosts.yml",
}
# Vault passwords an entry needs (--vault-id [LABEL@]FILE, relative to this directory).
VAULT_IDS = {
    "vault": ["ansible/vault/keys/vault-pass.txt", "prod@ansible/vault/keys/prod-pass.txt"]
}
EXPORTED = ["kubespray-sample-ini", "kubespray-mycluster", "lamp_haproxy", "precedence"]
# Ansible's own exports, loaded as inventories: export file -> the corpus entry it came from.
EXPORTS = {
    "exports/lamp_haproxy.json": "lamp_haproxy",
    "exports/lamp_haproxy.yml": "lamp_haproxy",
    "exports/precedence.json": "precedence",
    "exports/precedence.yml": "precedence",
    "exports/kubespray-mycluster.json": "kubespray-mycluster",
    "exports/kubespray-mycluster.yml": "kubespray-mycluster",
    "exports/script-legacy.json": "script-legacy",
}


def vault_args(name: str) -> list[str]:
    return [a for v in VAULT_IDS.get(name, []) for a in ("--vault-id", vault_id(v))]


def vault_id(item: str) -> str:
    """``[LABEL@]FILE`` with FILE made absolute (ansible-inventory runs elsewhere)."""
    label, sep, path = item.rpartition("@")
    return f"{label}{sep}{os.path.join(HERE, path)}"


def run(tool: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as empty:
        proc = subprocess.run([tool, *args], cwd=empty, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{tool} {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def main(tool: str) -> None:
    version = run(tool, "--version").splitlines()[0]
    os.makedirs(os.path.join(HERE, "expected"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "exports"), exist_ok=True)
    for name, path in CORPUS.items():
        src = os.path.join(HERE, path)
        write(f"expected/{name}.json", run(tool, "-i", src, "--list", *vault_args(name)))
        if name in EXPORTED:
            write(f"expected/{name}.export.json", run(tool, "-i", src, "--list", "--export"))
    for export, name in EXPORTS.items():
        flags = ["--list", "-y"] if export.endswith(".yml") else ["--list"]
        write(export, run(tool, "-i", os.path.join(HERE, CORPUS[name]), *flags))
        if export.endswith(".yml"):
            again = json.loads(run(tool, "-i", os.path.join(HERE, export), "--list"))
            with open(os.path.join(HERE, f"expected/{name}.json"), encoding="utf-8") as fh:
                first = json.load(fh)
            if normal(again) != normal(first):
                sys.exit(f"Ansible reads {export} back differently from {name}")
    write("expected/VERSION", version + "\n")
    print(version)


def normal(data: dict) -> object:
    """Hosts' vars and each non-empty group's hosts, children's included: what a YAML
    export keeps (it sorts names and drops empty groups)."""
    groups = {g: v for g, v in data.items() if g != "_meta"}

    def members(g: str, seen: frozenset[str] = frozenset()) -> set[str]:
        own = set(groups.get(g, {}).get("hosts", []))
        for child in groups.get(g, {}).get("children", []):
            if child not in seen:
                own |= members(child, seen | {g})
        return own

    found = {g: sorted(members(g)) for g in groups}
    return data["_meta"]["hostvars"], {g: m for g, m in found.items() if m}


def write(rel: str, text: str) -> None:
    with open(os.path.join(HERE, rel), "w", encoding="utf-8") as fh:
        fh.write(text)


if __name__ == "__main__":
    main(sys.argv[1])
