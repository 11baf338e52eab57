"""Inventory files as text: reading, decoding, lines and JSON, with positions in errors.

Every inventory reader starts here, so that a missing file or a non-UTF-8 byte is
refused the same way whatever its format, and a file encrypted by ``ansible-vault`` is
decrypted (or refused, without a password) the same way.
"""

from __future__ import annotations

import bisect
import json
import json.scanner
import re
from collections.abc import Callable
from typing import Any

from runbook.errors import InventoryError, Position
from runbook.load.vault import Keyring, is_encrypted

# Called with each JSON string value (not key) and where it starts; returns what to keep.
StringHook = Callable[[str, Position], str]


def read_text(file: str) -> str:
    """The file's text; ``InventoryError`` if it is missing, unreadable, not UTF-8 or vaulted."""
    return read_vaulted(file, None)[0]


def read_vaulted(file: str, vault: Keyring | None) -> tuple[str, bool]:
    """The file's text, decrypted when ``ansible-vault`` encrypted it whole (then True:
    every value in it is a secret); ``InputError`` without a password that opens it."""
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InventoryError("inventory file not found", Position(file)) from None
    except IsADirectoryError:
        raise InventoryError(
            "is a directory; name the inventory file inside it (group_vars/ and host_vars/ "
            "beside that file are read too)",
            Position(file),
        ) from None
    except OSError as e:
        raise InventoryError(f"cannot read: {e.strerror}", Position(file)) from None
    return decode(data, file, vault)


def decode(data: bytes, file: str, vault: Keyring | None = None) -> tuple[str, bool]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InventoryError(
            f"not valid UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8",
            Position(file, line, col),
        ) from None
    text = text.removeprefix("\ufeff")  # editors on Windows add a BOM
    if not is_encrypted(text):
        return text, False
    if vault is None or not vault.secrets:
        raise InventoryError(
            "encrypted with ansible-vault and no vault password is given "
            "(--vault-password-file FILE or --vault-id LABEL@FILE)",
            Position(file, 1, 1),
        )
    return decode(vault.decrypt_file(text, file).encode(), file)[0], True


def lines(text: str) -> list[str]:
    # Not str.splitlines(): it also splits on form feeds and U+2028, which editors do not
    # count as lines, and the line numbers in errors must match the operator's editor.
    return re.split(r"\r\n|\r|\n", text)


def parse_json(text: str, file: str, strings: StringHook | None = None) -> Any:
    """JSON as JSON (not as YAML, which reads ``1e3`` as text and refuses tab indents).

    With ``strings``, each string value goes through it with its position; that takes
    json's pure-Python scanner, so script output, which needs no positions, skips it.
    Duplicate keys are refused, as in YAML files.
    """
    decoder = json.JSONDecoder(object_pairs_hook=unique_keys)
    if strings is not None:
        starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

        def parse_string(s: str, end: int, strict: bool) -> tuple[str, int]:
            value, after = json.decoder.scanstring(s, end, strict)  # type: ignore[attr-defined]
            line = bisect.bisect_right(starts, end - 1)
            return strings(value, Position(file, line, end - starts[line - 1])), after

        decoder.parse_string = parse_string  # type: ignore[attr-defined]
        decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as e:
        raise InventoryError(
            f"not valid JSON: {e.msg}", Position(file, e.lineno, e.colno)
        ) from None
    except DuplicateKey as e:
        raise InventoryError(f"duplicate key {e.key!r} in a JSON object", Position(file)) from None
    except RecursionError:
        raise InventoryError("JSON nested too deeply", Position(file)) from None


class DuplicateKey(ValueError):
    """A JSON object holds ``key`` twice (``unique_keys``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a key written twice: a reader of the file would
    see the first value, ``json`` keeps the last. Raises ``DuplicateKey``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out
