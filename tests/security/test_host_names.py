"""Host names and addresses are safe words (SPEC §6; issue 24).

A dynamic inventory is data from elsewhere (a cloud API's tags, a CMDB). A host name with
spaces reached the operator's ``ProxyCommand ... %h`` and ran a command on the controller
(OpenSSH refuses such names since CVE-2023-51385); a host name ``../../x`` made ``fetch``
write outside the runbook's directory and ``copy`` ship any controller file out. Every
inventory source now refuses such a name, exit 2 naming it, before anything runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from runbook.inventory.words import unsafe
from tests.e2e.helpers import journal_dirs, runbook, write


def _script(path: Path, hosts: list[str], hostvars: dict[str, dict[str, str]]) -> Path:
    listing = {"web": {"hosts": hosts}, "_meta": {"hostvars": hostvars}}
    write(path, f"#!{sys.executable}\nimport json\nprint(json.dumps({json.dumps(listing)}))\n")
    path.chmod(0o755)
    return path


def test_a_host_name_with_spaces_never_reaches_proxycommand(tmp_path: Path) -> None:
    pwned = tmp_path / "PWNED"
    _script(tmp_path / "inv.py", [f"web1 ;touch {pwned};"], {})
    config = write(tmp_path / "ssh_config", "Host *\n    ProxyCommand sh -c 'echo %h'\n")
    rb = write(
        tmp_path / "rb.yml",
        'name: proxy\ninventory: inv.py\nsteps:\n  - name: s\n    hosts: all\n    run: "true"\n',
    )
    done = runbook(
        "apply", "--yes", "--ssh-config", str(config), "--connect-timeout", "3", str(rb),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "inv.py" in done.stderr and "holds whitespace" in done.stderr, done.stderr
    assert not pwned.exists() and journal_dirs(tmp_path) == []


@pytest.mark.parametrize(
    "step",
    [
        "fetch: {src: /etc/hostname, dest: 'logs/{{ host.name }}.log'}",
        "copy: {src: 'files/{{ host.name }}', dest: /tmp/x}",
    ],
    ids=["fetch-dest", "copy-src"],
)
def test_a_host_name_that_is_a_path_is_refused(tmp_path: Path, step: str) -> None:
    """``../../outside`` from a script: logs/../../outside.log, files/../../outside."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "files").mkdir()
    secret = write(tmp_path / "outside", "controller file\n")
    _script(
        project / "inv.py", ["../../outside"], {"../../outside": {"ansible_connection": "local"}}
    )
    rb = write(
        project / "rb.yml",
        f"name: paths\ninventory: inv.py\nsteps:\n  - name: s\n    hosts: all\n    {step}\n",
    )
    for command in ("plan", "apply"):
        args = [command, "--yes", str(rb)] if command == "apply" else [command, str(rb)]
        done = runbook(*args, cwd=project)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "host name '../../outside' holds '/'" in done.stderr, done.stderr
    assert secret.read_text() == "controller file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "project"]


@pytest.mark.parametrize(
    "inventory",
    [
        '[web]\nw1 ansible_host="10.0.0.1 -oProxyCommand=x"\n',
        "[web]\nw1 ansible_host=-oProxyCommand=x\n",
        "[web]\nw1 ansible_user='root;id'\n",
        "[web]\nw1 ansible_ssh_common_args='-J \"a;id\"'\n",
        "[web]\nw1 ansible_host=\"{{ h }}\" h='`id`'\n",
    ],
    ids=["address-spaces", "address-option", "user-semicolon", "jump-semicolon", "templated"],
)
def test_an_unsafe_address_user_or_jump_host_is_refused(tmp_path: Path, inventory: str) -> None:
    write(tmp_path / "inv.ini", inventory)
    rb = write(
        tmp_path / "rb.yml",
        'name: a\ninventory: inv.ini\nsteps:\n  - name: s\n    hosts: all\n    run: "true"\n',
    )
    done = runbook("plan", str(rb))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "inv.ini:2:" in done.stderr and "host 'w1'" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_ordinary_names_and_addresses_are_safe_words() -> None:
    for word in ("web01", "db-1.example.com", "10.0.0.1", "fe80::1%eth0", "::1", "host_2", "ü"):
        assert unsafe(word) is None, word
    for word in ("", "-x", "a b", "a\tb", "a/b", "a;b", "a'b", 'a"b', "a`b", "a$b", "a|b"):
        assert unsafe(word) is not None, word
    for word in ("a\x1bb", "a\u202eb", "a\u200bb", "a\ufeffb", "a\u00a0b"):
        assert unsafe(word) is not None, repr(word)
