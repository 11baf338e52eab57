"""Ansible Vault: values tagged ``!vault`` and whole files encrypted by ``ansible-vault``.

Operators who move from Ansible keep their vaulted secrets in group_vars, host_vars,
inventories and vars files; runbook reads them unchanged. The format (1.1, and 1.2 with a
vault id) is Ansible's ``VaultAES256``: the envelope's hex body holds the salt, an
HMAC-SHA256 and the ciphertext; PBKDF2-HMAC-SHA256 (10,000 iterations) derives from the
password and the salt an AES-256 key, an HMAC key and the CTR counter block. Decryption
uses the ``cryptography`` package, which paramiko already brings.

A value read from a vault is a ``Vaulted``: a ``str`` whose text is its envelope (what
``ansible-inventory --list`` shows, and harmless anywhere it is not revealed), decrypted
only when a command reads it (``Keyring.reveal``), so a vaulted value that no step reads
needs no password, as in Ansible. The planner treats every revealed value as a secret.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import InputError, Position, UsageError

HEADER = "$ANSIBLE_VAULT;"
ITERATIONS = 10_000
DEFAULT_ID = "default"
ENV_PASSWORD_FILE = "RUNBOOK_VAULT_PASSWORD_FILE"
STAND_IN = "********"
ID_PREFIX = "_vault_"  # secret names of vaulted values: not a name a runbook can write
SCRIPT_TIMEOUT = 60.0  # seconds a vault password script may take


class VaultFormatError(ValueError):
    """The text is not a vault envelope runbook can read."""


class Vaulted(str):
    """A vaulted value. Its text is the envelope, never the secret: a path that forgets to
    reveal it shows ciphertext. ``plain`` is known already for a value of a wholly
    encrypted file (decrypted when the file was read); ``name`` is its secret name."""

    position: Position | None
    plain: str | None
    name: str
    made = False  # whether this process ever read one: when not, nothing is scanned for them

    def __new__(
        cls,
        envelope: str,
        position: Position | None,
        plain: str | None = None,
        name: str | None = None,
    ) -> Vaulted:
        value = super().__new__(cls, envelope)
        Vaulted.made = True
        value.position = position
        value.plain = plain
        # Stable: the same envelope has the same name in every plan, wherever it is read.
        value.name = name or ID_PREFIX + hashlib.sha256(envelope.strip().encode()).hexdigest()[:12]
        return value

    def __reduce__(self) -> tuple[Any, ...]:  # copy.deepcopy and pickle keep the fields
        return (Vaulted, (str(self), self.position, self.plain, self.name))


@dataclass(frozen=True)
class Envelope:
    version: str
    label: str | None
    salt: bytes
    mac: bytes
    ciphertext: bytes


def is_encrypted(text: str) -> bool:
    return text.lstrip().startswith(HEADER)


def parse(text: str) -> Envelope:
    """``$ANSIBLE_VAULT;1.1;AES256`` (or ``1.2;AES256;LABEL``) and its hex lines."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if not lines:
        raise VaultFormatError("empty vault value")
    fields = lines[0].split(";")
    if fields[0] != HEADER.rstrip(";") or len(fields) < 3:
        raise VaultFormatError("not an ansible-vault envelope (no $ANSIBLE_VAULT header)")
    version, cipher = fields[1], fields[2].strip()
    if version not in ("1.1", "1.2"):
        raise VaultFormatError(f"vault format {version} is not supported (1.1 and 1.2 are)")
    if cipher != "AES256":
        raise VaultFormatError(f"vault cipher {cipher} is not supported (AES256 is)")
    label = fields[3].strip() if version == "1.2" and len(fields) > 3 else None
    try:
        body = binascii.unhexlify("".join(lines[1:]))
        salt, mac, data = body.split(b"\n", 2)
        return Envelope(
            version,
            label,
            binascii.unhexlify(salt),
            binascii.unhexlify(mac),
            binascii.unhexlify(data),
        )
    except (binascii.Error, ValueError):
        raise VaultFormatError("the vault body is not the hex Ansible writes") from None


def _keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    derived = hashlib.pbkdf2_hmac("sha256", password, salt, ITERATIONS, 32 + 32 + 16)
    return derived[:32], derived[32:64], derived[64:]


def _ctr(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(key), modes.CTR(iv))
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


def decrypt(envelope: Envelope, password: bytes) -> bytes | None:
    """The plaintext, or None when ``password`` is not this envelope's."""
    from cryptography.hazmat.primitives import padding

    aes_key, mac_key, iv = _keys(password, envelope.salt)
    expected = hmac.new(mac_key, envelope.ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, envelope.mac):
        return None
    padded = _ctr(aes_key, iv, envelope.ciphertext, encrypt=False)
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


def encrypt(plaintext: str, password: bytes, label: str | None, salt: bytes) -> str:
    """An envelope ``ansible-vault`` decrypts (``label``: format 1.2). Used to store a
    value of a wholly encrypted file in a saved plan, with the password that opened it."""
    from cryptography.hazmat.primitives import padding

    aes_key, mac_key, iv = _keys(password, salt)
    padder = padding.PKCS7(128).padder()
    data = _ctr(aes_key, iv, padder.update(plaintext.encode()) + padder.finalize(), encrypt=True)
    mac = hmac.new(mac_key, data, hashlib.sha256).hexdigest()
    body = binascii.hexlify(
        b"\n".join([binascii.hexlify(salt), mac.encode(), binascii.hexlify(data)])
    ).decode()
    head = f"{HEADER}1.2;AES256;{label}" if label else f"{HEADER}1.1;AES256"
    return "\n".join([head, *(body[i : i + 80] for i in range(0, len(body), 80))]) + "\n"


@dataclass(frozen=True)
class VaultSecret:
    """One password: its vault id label and where it came from (for messages)."""

    label: str
    password: bytes = field(repr=False)
    source: str


@dataclass
class Keyring:
    """The vault passwords of one invocation, and every value revealed with them."""

    secrets: tuple[VaultSecret, ...] = ()
    opened: dict[str, VaultSecret] = field(default_factory=dict)  # encrypted file -> password
    blind: bool = False  # reveal nothing: every value is its stand-in (runbook diff)
    revealed: dict[str, str] = field(default_factory=dict)  # secret name -> plaintext
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {"vault": ...}

    def open(self, text: str, where: Position | None) -> tuple[str, VaultSecret]:
        """Decrypt an envelope: the plaintext and the password that opened it.
        ``InputError`` at ``where`` when no password is given or none fits."""
        try:
            envelope = parse(text)
        except VaultFormatError as exc:
            raise InputError(f"vaulted value: {exc}", where) from None
        if not self.secrets:
            raise InputError(
                "this value is encrypted with ansible-vault and no vault password is given "
                f"(--vault-password-file FILE, --vault-id LABEL@FILE or {ENV_PASSWORD_FILE})",
                where,
            )
        # A 1.2 envelope names its vault id: its password is tried first, then the rest
        # (as Ansible does unless vault_id_match is set).
        ordered = sorted(self.secrets, key=lambda s: s.label != envelope.label)
        for secret in ordered:
            plain = decrypt(envelope, secret.password)
            if plain is not None:
                try:
                    return plain.decode("utf-8"), secret
                except UnicodeDecodeError:
                    raise InputError("vaulted value is not UTF-8 text", where) from None
        tried = ", ".join(f"{s.label}@{s.source}" for s in self.secrets)
        label = f" (vault id {envelope.label!r})" if envelope.label else ""
        raise InputError(
            f"no vault password given decrypts this value{label}; tried {tried}", where
        )

    def reveal(self, value: Vaulted) -> str:
        """The plaintext of a vaulted value, recorded as a secret of this run."""
        if self.blind:
            return STAND_IN
        known = self.revealed.get(value.name)
        if known is not None:
            return known
        if value.plain is not None:
            plain = value.plain
            source = self._stored_form(value)
        else:
            plain, _ = self.open(str(value), value.position)
            source = str(value).strip() + "\n"
        if not plain:
            raise InputError("vaulted value is empty", value.position)
        self.revealed[value.name] = plain
        self.sources[value.name] = {"vault": source}
        return plain

    def _stored_form(self, value: Vaulted) -> str:
        """A value of a wholly encrypted file, encrypted on its own for a saved plan
        with the first password (the one a saved plan is applied with). The salt is
        derived from the password and the value, so the same plan saves the same bytes."""
        assert value.plain is not None
        where = value.position.file if value.position is not None else ""
        secret = self.opened.get(where, self.secrets[0])
        salt = hmac.new(secret.password, value.name.encode(), hashlib.sha256).digest()
        label = secret.label if secret.label != DEFAULT_ID else None
        return encrypt(value.plain, secret.password, label, salt)

    def decrypt_file(self, text: str, file: str) -> str:
        """A wholly encrypted file's text (the caller marks its values ``Vaulted``)."""
        plain, secret = self.open(text, Position(file, 1, 1))
        self.opened[file] = secret
        return plain


def read_keyring(vault_ids: Iterable[str], environ: Mapping[str, str] | None = None) -> Keyring:
    """Passwords from ``--vault-id [LABEL@]FILE`` items (``--vault-password-file F`` is
    ``default@F``) and ``RUNBOOK_VAULT_PASSWORD_FILE``. An executable file is run and its
    stdout is the password, as Ansible does (a ``*-client`` script gets ``--vault-id
    LABEL``). Raises ``UsageError`` for a missing, empty or failing source."""
    environ = os.environ if environ is None else environ
    items = list(vault_ids)
    if environ.get(ENV_PASSWORD_FILE):
        items.append(f"{DEFAULT_ID}@{environ[ENV_PASSWORD_FILE]}")
    secrets = []
    for item in dict.fromkeys(items):
        label, sep, path = item.partition("@")
        if not sep:
            label, path = DEFAULT_ID, item
        label = label or DEFAULT_ID
        if path == "prompt":
            raise UsageError(
                f"--vault-id {item}: runbook does not prompt for vault passwords; "
                "give a password file (or a script that prints it)"
            )
        secrets.append(VaultSecret(label, _password(path, label), path))
    return Keyring(tuple(secrets))


def _password(path: str, label: str) -> bytes:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"vault password file {path}: {exc.strerror}") from None
    if stat.S_ISREG(mode) and os.access(path, os.X_OK):
        data = _run_script(path, label)
    else:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UsageError(f"vault password file {path}: {exc.strerror}") from None
    password = data.strip()
    if not password:
        raise UsageError(f"vault password file {path} is empty")
    return password


def _run_script(path: str, label: str) -> bytes:
    argv = [os.path.abspath(path)]
    if os.path.splitext(os.path.basename(path))[0].endswith("-client"):
        argv += ["--vault-id", label]
    try:
        proc = subprocess.run(
            argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=SCRIPT_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise UsageError(f"vault password script {path} did not finish in 60 s") from None
    except OSError as exc:
        raise UsageError(f"vault password script {path}: {exc.strerror}") from None
    if proc.returncode:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise UsageError(
            f"vault password script {path} exited {proc.returncode}" + (f": {err}" if err else "")
        )
    return proc.stdout


# -- values that hold vaulted strings -----------------------------------------------------


def has_vaulted(value: Any) -> bool:
    if not Vaulted.made:
        return False
    if isinstance(value, Vaulted):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_vaulted(v) for v in value)
    if isinstance(value, dict):
        return any(has_vaulted(v) for v in value.values())
    return False


def vaulted_in(value: Any) -> list[Vaulted]:
    if isinstance(value, Vaulted):
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in vaulted_in(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in vaulted_in(v)]
    return []


def replace_vaulted(value: Any, by: Any) -> Any:
    """``value`` with every vaulted string replaced by ``by(vaulted)``."""
    if isinstance(value, Vaulted):
        return by(value)
    if isinstance(value, (list, tuple)) and has_vaulted(value):
        return [replace_vaulted(v, by) for v in value]
    if isinstance(value, dict) and has_vaulted(value):
        return {k: replace_vaulted(v, by) for k, v in value.items()}
    return value


def vault_all(
    value: Any, file: str, keyring: Keyring, plain_keys: frozenset[str] = frozenset()
) -> Any:
    """Every string of a wholly encrypted file's data (``keyring`` opened it) as a
    ``Vaulted`` known in plain: any value of such a file is a secret (SPEC §13). Numbers
    and booleans stay data, and so do the values of ``plain_keys`` at the top (how a host
    is reached). A value's name is keyed by the password that opened the file, so it is the
    same wherever the file is and says nothing of the value without it."""
    password = keyring.opened[file].password

    def mark(text: str) -> Vaulted:
        digest = hmac.new(password, b"runbook-vault-name\0" + text.encode(), hashlib.sha256)
        name = ID_PREFIX + digest.hexdigest()[:12]
        return Vaulted(STAND_IN, Position(file, 1, 1), plain=text, name=name)

    def walk(v: Any) -> Any:
        if isinstance(v, str) and not isinstance(v, Vaulted):
            return mark(str(v))
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    if isinstance(value, dict):
        return {k: v if k in plain_keys else walk(v) for k, v in value.items()}
    return walk(value)


JSON_KEY = "__ansible_vault"


def from_json(value: Any, position: Position | None) -> Any:
    """``{"__ansible_vault": ENVELOPE}`` — how ``ansible-inventory --list`` prints a
    vaulted value — read back as the vaulted value it is."""
    if isinstance(value, dict):
        if set(value) == {JSON_KEY} and isinstance(value[JSON_KEY], str):
            return Vaulted(value[JSON_KEY], position)
        return {k: from_json(v, position) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v, position) for v in value]
    return value
