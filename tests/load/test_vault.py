"""Ansible Vault decryption, checked against files ``ansible-vault`` itself wrote.

The files under ``tests/data/inventories/ansible/vault`` were made by ansible-core
2.19.14's ``ansible-vault`` (``encrypt_string`` for the ``!vault`` values, ``encrypt``
for the whole files) with the passwords in ``keys/``; nothing here was encrypted by
runbook, except the round trip of its own ``encrypt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbook.errors import InputError, Position, UsageError
from runbook.load.vault import (
    Keyring,
    Vaulted,
    encrypt,
    parse,
    read_keyring,
    vault_all,
)
from runbook.load.yamlpos import load_yaml

DATA = Path(__file__).parents[1] / "data" / "inventories" / "ansible" / "vault"
KEYS = DATA / "keys"
DEFAULT = str(KEYS / "vault-pass.txt")
PROD = f"prod@{KEYS / 'prod-pass.txt'}"


def _values() -> dict[str, Vaulted]:
    data, _ = load_yaml(str(DATA / "group_vars" / "db.yml"))
    return data  # type: ignore[no-any-return]


def test_inline_values_of_both_formats_decrypt() -> None:
    values = _values()
    ring = read_keyring([DEFAULT, PROD], {})
    assert parse(values["db_password"]).version == "1.1"
    assert parse(values["api_key"]).label == "prod"
    assert ring.reveal(values["db_password"]) == "s3cret with spaces 'and' quotes"
    assert ring.reveal(values["api_key"]) == "prod-api-key-0123456789"
    assert set(ring.revealed) == {values["db_password"].name, values["api_key"].name}
    # What a saved plan stores: the envelope itself, never the plaintext.
    stored = ring.sources[values["db_password"].name]["vault"]
    assert stored.startswith("$ANSIBLE_VAULT;1.1;AES256\n") and "s3cret" not in stored


def test_a_labelled_value_opens_with_another_id_too_as_in_ansible() -> None:
    """Without vault_id_match, Ansible tries every password; so does runbook."""
    values = _values()
    ring = read_keyring([f"other@{KEYS / 'prod-pass.txt'}"], {})
    assert ring.reveal(values["api_key"]) == "prod-api-key-0123456789"


def test_no_password_or_a_wrong_one_names_the_value(tmp_path: Path) -> None:
    values = _values()
    with pytest.raises(InputError, match="no vault password is given") as info:
        Keyring().reveal(values["db_password"])
    assert info.value.position == Position(str(DATA / "group_vars" / "db.yml"), 3, 14)
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    with pytest.raises(InputError, match=r"no vault password given decrypts this value"):
        read_keyring([str(wrong)], {}).reveal(values["db_password"])


def test_whole_files_decrypt_and_every_string_in_them_is_secret() -> None:
    ring = read_keyring([DEFAULT, PROD], {})
    backup = DATA / "group_vars" / "all" / "backup.yml"
    text = ring.decrypt_file(backup.read_text(), str(backup))
    assert text.startswith("backup_token: bk-token-abcdef123\n")
    release = DATA / "vars" / "release.yml"  # format 1.2, vault id prod
    assert "rel-key-9f8e7d" in ring.decrypt_file(release.read_text(), str(release))
    marked = vault_all({"a": "x", "n": 1, "l": ["y"], "b": "x"}, str(backup), ring)
    assert isinstance(marked["a"], Vaulted) and marked["a"].plain == "x"
    assert marked["n"] == 1 and marked["l"][0].plain == "y"
    assert marked["a"].name != marked["l"][0].name and marked["a"].name == marked["b"].name
    other = read_keyring([PROD], {})
    other.decrypt_file(release.read_text(), str(backup))  # another password: other names
    assert vault_all("x", str(backup), other).name != marked["a"].name


def test_runbook_encrypts_what_ansible_vault_and_runbook_decrypt() -> None:
    ring = read_keyring([PROD], {})
    envelope = encrypt("round trip", b"prod-only-pass", "prod", b"s" * 32)
    assert envelope.startswith("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    assert all(len(line) <= 80 for line in envelope.splitlines())
    assert ring.open(envelope, None)[0] == "round trip"


def test_password_sources(tmp_path: Path) -> None:
    script = tmp_path / "vault-pass.sh"
    script.write_text("#!/bin/sh\necho 'correct horse battery staple'\n")
    script.chmod(0o700)
    client = tmp_path / "keyring-client.sh"  # a *-client script is told the vault id
    client.write_text('#!/bin/sh\n[ "$1 $2" = "--vault-id prod" ] && echo prod-only-pass\n')
    client.chmod(0o700)
    values = _values()
    assert read_keyring([str(script)], {}).reveal(values["db_password"]).startswith("s3cret")
    ring = read_keyring([f"prod@{client}"], {})
    assert ring.reveal(values["api_key"]) == "prod-api-key-0123456789"
    env_ring = read_keyring([], {"RUNBOOK_VAULT_PASSWORD_FILE": DEFAULT})
    assert [s.label for s in env_ring.secrets] == ["default"]
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    failing.chmod(0o700)
    with pytest.raises(UsageError, match="exited 3: nope"):
        read_keyring([str(failing)], {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for bad, message in ((str(empty), "is empty"), ("x@prompt", "does not prompt")):
        with pytest.raises(UsageError, match=message):
            read_keyring([bad], {})
    with pytest.raises(UsageError, match="No such file"):
        read_keyring([os.fspath(tmp_path / "missing")], {})


def test_how_a_host_is_reached_is_never_a_secret(tmp_path: Path) -> None:
    """A wholly encrypted inventory's ``ansible_host`` stays data (it is shown in every
    plan); an inline ``!vault`` one is refused where it is written."""
    from runbook.inventory.build import build_inventory

    ring = read_keyring([DEFAULT], {})
    password = b"correct horse battery staple"
    whole = tmp_path / "whole.yml"
    text = "all:\n  hosts:\n    web1: {ansible_host: 192.0.2.7, token: t-0001}\n"
    whole.write_text(encrypt(text, password, None, os.urandom(32)))
    host = build_inventory({}, [str(whole)], vault=ring).hosts["web1"]
    assert host.address == "192.0.2.7" and type(host.vars["ansible_host"]) is str
    assert isinstance(host.vars["token"], Vaulted) and host.vars["token"].plain == "t-0001"
    inline = tmp_path / "inline.yml"
    envelope = encrypt("bob", password, None, os.urandom(32)).replace("\n", "\n        ")
    head = "all:\n  hosts:\n    web1:\n      ansible_user: !vault |\n        "
    inline.write_text(head + envelope)
    with pytest.raises(InputError, match="ansible_user of host 'web1' is an ansible-vault") as e:
        build_inventory({}, [str(inline)], vault=ring)
    assert e.value.position == Position(str(inline), 4, 21)
