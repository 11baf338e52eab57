#!/usr/bin/env python3
"""An Ansible inventory script, written for runbook's tests: `--list` prints every group
with its hosts, children and vars, and `_meta.hostvars`, so `--host` is never needed."""

import json
import sys

INVENTORY = {
    "web": {
        "hosts": ["web1.example.com", "web2.example.com"],
        "vars": {"http_port": 8080, "motd": "{{ not rendered: script output }}"},
    },
    "db": {"hosts": ["db1.example.com"], "vars": {"pg_version": 16}},
    "prod": {"children": ["web", "db"], "vars": {"env": "production", "http_port": 80}},
    "all": {"vars": {"ansible_user": "deploy"}},
    "_meta": {
        "hostvars": {
            "web1.example.com": {"ansible_host": "10.0.0.11", "http_port": 8081},
            "db1.example.com": {"ansible_host": "10.0.0.21", "ansible_port": 2222},
        }
    },
}

if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        json.dump(INVENTORY, sys.stdout, indent=2)
    elif sys.argv[1:2] == ["--host"]:
        json.dump(INVENTORY["_meta"]["hostvars"].get(sys.argv[2], {}), sys.stdout)
    else:
        sys.exit("usage: inventory.py --list | --host HOST")
