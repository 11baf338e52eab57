"""Reading secrets and masking them (SPEC §2, §8 "Masking")."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.errors import InputError
from runbook.load.secrets import MASK, Masker, detokenize, resolve_secrets, tokenize
from runbook.model.runbook import SecretSpec

PEM = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBq2M4nFzK3rCVPDNtbyJ7r0ZkJ2mVfO2lJcnmlq8nM9AAAAJhnHq3aZx6t
password
-----END OPENSSH PRIVATE KEY-----"""


def test_a_value_is_masked_whole_and_as_quote_renders_it() -> None:
    mask = Masker(["it's s3cret"])
    assert mask("pw=it's s3cret; quoted='it'\"'\"'s s3cret'") == f"pw={MASK}; quoted={MASK}"


def test_a_multi_line_secret_is_masked_line_by_line_but_not_armour_or_words() -> None:
    mask = Masker([PEM])
    line = PEM.splitlines()[2]
    out = mask(f"a line of the key alone: {line}\n-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert line not in out and MASK in out
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in out  # armour alone: not a secret
    assert mask("password reset") == "password reset"  # an ordinary word alone: kept
    assert mask(PEM) == MASK


def test_ordinary_words_of_a_one_line_secret_are_not_masked_alone() -> None:
    assert Masker(["correct horse battery"])("a horse") == "a horse"


def test_tokens_round_trip_and_name_a_missing_secret() -> None:
    values = {"pw": "a'b c", "other": "zz"}
    text = tokenize("x a'b c y 'a'\"'\"'b c' zz", values)
    assert "a'b" not in text and "((secret:pw))" in text and "((secret:pw|quote))" in text
    assert detokenize(text, values) == "x a'b c y 'a'\"'\"'b c' zz"
    with pytest.raises(InputError, match="needs secret 'pw'"):
        detokenize(text, {"other": "zz"})


def test_reading_secrets_refuses_missing_empty_and_nul(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("from-file\n")
    got = resolve_secrets(
        [SecretSpec("a", env="A"), SecretSpec("b", file=str(tmp_path / "f"))], {"A": "x"}
    )
    assert got == {"a": "x", "b": "from-file"}
    for specs, env, why in (
        ([SecretSpec("a", env="A")], {}, "not set"),
        ([SecretSpec("a", env="A")], {"A": ""}, "empty"),
        ([SecretSpec("a", env="A")], {"A": "x\0y"}, "NUL"),
        ([SecretSpec("a", file=str(tmp_path / "missing"))], {}, "cannot read"),
    ):
        with pytest.raises(InputError, match=why):
            resolve_secrets(specs, env)
