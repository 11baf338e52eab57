"""A secret transformed by a filter shows nowhere (SPEC §6, §8; issue 12 item 2).

Everything shown, saved or journaled is rendered with stand-ins, so ``urlencode``,
``tojson``, quoting or a key lookup cannot carry the value (or a form of it) past the
masker, which knows only the value as written and as ``quote`` renders it. Each test
checks every surface for the value and each transformed form, and checks that commands
still receive the real value (checksums written by the commands themselves).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import shlex
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jinja2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.helpers import journal_dirs, runbook, write

STAND_IN = "********"
_JINJA = jinja2.Environment()


def jinja(value: object, expr: str) -> str:
    """``value`` through a Jinja filter chain, as a template would render it."""
    return _JINJA.from_string("{{ v | " + expr + " }}").render(v=value)


def forms(value: str, core: str) -> dict[str, str]:
    """The value as written and as each filter, quoting or encoding would show it."""
    found = {
        "as written": value,
        "urlencode": jinja(value, "urlencode"),
        "urllib quote_plus": urllib.parse.quote_plus(value),
        "tojson": jinja(value, "tojson"),
        "json.dumps": json.dumps(value),
        "json.dumps ascii": json.dumps(value, ensure_ascii=True),
        "shell-quoted": shlex.quote(value),
        "upper": value.upper(),
        "html-escaped": html.escape(value),
        "base64": base64.b64encode(value.encode()).decode(),
        "core": core,
        "core, upper-case": core.upper(),
        "core, lower-case": core.lower(),
    }
    return found


def leaks(texts: dict[str, str], needles: dict[str, str]) -> list[str]:
    return [
        f"{form} in {where}"
        for where, text in texts.items()
        for form, needle in needles.items()
        if needle in text
    ]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def surfaces(rb: Path, tmp: Path, env: dict[str, str], applies: list[list[str]]) -> dict[str, str]:
    """Every text runbook shows or stores for ``rb``: validate, plan (text, JSON, saved),
    the given applies' output (``PLAN`` in the args: apply the saved plan), every journal
    file, runs, and show (whole, by host, by step, both) and report of each run."""
    texts: dict[str, str] = {}
    plan_file = tmp / "saved-plan.json"

    def cli(name: str, *args: str) -> None:
        proc = runbook(*args, cwd=tmp, env=env)
        assert proc.returncode == 0, (name, proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        texts[name] = proc.stdout + proc.stderr

    cli("plan --out", "plan", "--out", str(plan_file), str(rb))
    texts["saved plan file"] = plan_file.read_text()
    for args in applies:  # in order: one apply of a runbook at a time
        target = str(plan_file) if "PLAN" in args else str(rb)
        cli(f"apply {' '.join(args)}", "apply", "--yes", *(a for a in args if a != "PLAN"), target)
    runs = journal_dirs(tmp)
    assert len(runs) == len(applies)
    # The rest only reads: run it side by side (the CLI's start-up dominates).
    reads: list[tuple[str, ...]] = [
        ("validate", "validate", str(rb)),
        ("plan text", "plan", str(rb)),
        ("plan json", "plan", "--format", "json", str(rb)),
        ("runs", "runs", str(rb)),
    ]
    for run in runs:
        steps = sorted(
            {e["step"] for e in map(json.loads, (run / "events.jsonl").open()) if "step" in e}
        )
        show = ("show", run.name, str(rb))
        reads += [
            (f"show {run.name}", *show),
            (f"show {run.name} --host", *show, "--host", "localhost"),
            (f"show {run.name} --step", *show, "--step", steps[0]),
            (f"show {run.name} --host --step", *show, "--host", "localhost", "--step", steps[-1]),
            (
                f"report {run.name}",
                "report",
                run.name,
                str(rb),
                "--out",
                str(tmp / f"{run.name}.html"),
            ),
        ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda r: cli(*r), reads))
    for path in [*(tmp / ".runbook").rglob("*"), *tmp.glob("*.html")]:
        if path.is_file():
            texts[f"file {path.relative_to(tmp)}"] = path.read_text(errors="replace")
    return texts


RUNBOOK = """\
name: rendered secrets
hosts:
  local: [localhost]
secrets:
  pw: {{env: RB_RENDER_SECRET}}
vars:
  users: {{alice: admin}}
env:
  PGPASSWORD: "{{{{ pw }}}}"
  DSN: "user='app' password='{{{{ pw }}}}' host=db"
steps:
  - name: filters
    hosts: local
    when: pw | length > 3
    until: pw not in stdout
    retries: 1
    run: |
      printf '%s' {{{{ pw | urlencode | quote }}}} | sha256sum > {sums}/urlencode
      printf '%s' {{{{ pw | tojson | quote }}}} | sha256sum > {sums}/tojson
      printf '%s' {{{{ pw | quote }}}} | sha256sum > {sums}/quote
      printf '%s' {{{{ pw | upper | quote }}}} | sha256sum > {sums}/upper
      printf '%s' "$PGPASSWORD" | sha256sum > {sums}/env
      printf '%s' "$DSN" | sha256sum > {sums}/dsn
      url="https://app:{{{{ pw | urlencode }}}}@db/x?c={{{{ pw | tojson | urlencode }}}}"
      echo done
  - name: in a step env
    hosts: local
    env:
      CONN: "{{{{ {{'password': pw, 'user': 'app'}} | tojson }}}}"
    run: printf '%s' "$CONN" | sha256sum > {sums}/conn
  - name: echo it
    hosts: local
    run: |
      printf 'the value: %s\\n' "$PGPASSWORD"
    register: echoed
  - name: read the register
    hosts: local
    run: printf '%s' {{{{ echoed.stdout | quote }}}} | sha256sum > {sums}/register
  - name: read its lines
    hosts: local
    run: printf '%s' {{{{ echoed.stdout_lines[0] | quote }}}} | sha256sum > {sums}/lines
"""


def test_a_transformed_secret_shows_on_no_surface_and_arrives_exact(tmp_path: Path) -> None:
    core = f"CoRe{secrets.token_hex(4)}"
    secret = f"pa ss'w\u00f6rd&<{core}>/\"x"
    sums = tmp_path / "sums"
    sums.mkdir()
    rb = write(tmp_path / "rb.yml", RUNBOOK.format(sums=sums))
    env = {"RB_RENDER_SECRET": secret}
    texts = surfaces(rb, tmp_path, env, [["-v"], ["--output", "json", "-v"], ["-v", "PLAN"]])
    found = leaks(texts, forms(secret, core))
    assert not found, "\n".join(found)
    # Not vacuous: the filters ran on the stand-in where the plan shows them, and the
    # echoed value was masked in the output.
    assert "%2A%2A%2A%2A%2A%2A%2A%2A" in texts["plan text"]
    assert json.dumps(STAND_IN) in texts["plan text"]
    assert f"the value: {STAND_IN}" in texts["apply -v"]
    # The commands got the real value through every filter (the last apply wrote these).
    want = {
        "urlencode": jinja(secret, "urlencode"),
        "tojson": jinja(secret, "tojson"),
        "quote": secret,
        "upper": secret.upper(),
        "env": secret,
        "dsn": f"user='app' password='{secret}' host=db",
        "conn": jinja({"password": secret, "user": "app"}, "tojson"),
        "register": f"the value: {secret}",
        "lines": f"the value: {secret}",
    }
    got = {name: (sums / name).read_text().split()[0] for name in want if (sums / name).exists()}
    assert got == {name: sha(v) for name, v in want.items()}


def test_a_key_used_as_a_dict_key_fails_without_showing_it(tmp_path: Path) -> None:
    """``{{ users[pw] }}``: Jinja's error names the missing key. validate, plan and apply
    refuse it (exit 2, nothing run) with a message that holds no form of the value."""
    core = f"KeY{secrets.token_hex(4)}"
    secret = f"o'{core} x"
    marker = tmp_path / "ran"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: lookup
hosts:
  local: [localhost]
secrets:
  pw: {{env: RB_RENDER_SECRET}}
vars:
  users: {{alice: admin}}
steps:
  - name: first
    hosts: local
    run: touch {marker}
  - name: lookup
    hosts: local
    run: echo {{{{ users[pw] }}}}
""",
    )
    env = {"RB_RENDER_SECRET": secret}
    texts = {}
    for command in ("validate", "plan", "apply"):
        extra = ["--yes"] if command == "apply" else []
        proc = runbook(command, *extra, str(rb), cwd=tmp_path, env=env)
        texts[command] = proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.returncode == 2, texts[command]
        assert "rb.yml:14" in proc.stderr and "lookup" in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
    found = leaks(texts, forms(secret, core))
    assert not found, "\n".join(found)
    assert not marker.exists() and journal_dirs(tmp_path) == []


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_validate_and_plan_refuse_a_template_that_fails_on_the_secret(
    tmp_path: Path, command: str
) -> None:
    """They read the secrets but rendered secret commands only with stand-ins: a template
    that fails on the real value passed validate and plan (exit 0), failing apply only."""
    rb = write(
        tmp_path / "rb.yml",
        """\
name: lookup
hosts:
  local: [localhost]
secrets:
  pw: {env: RB_RENDER_SECRET}
vars:
  users: {alice: admin}
steps:
  - name: lookup
    hosts: local
    run: echo {{ users[pw] }}
""",
    )
    proc = runbook(command, str(rb), cwd=tmp_path, env={"RB_RENDER_SECRET": "s3cret-value"})
    assert "s3cret-value" not in proc.stdout + proc.stderr
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rb.yml:11" in proc.stderr


@pytest.mark.parametrize("reads", ["a secret", "a registered value"])
def test_until_that_reads_a_secret_or_register_gets_it(tmp_path: Path, reads: str) -> None:
    """SPEC §8: ``until`` may read registered values (and secrets): here the command's own
    templates read neither. (The planner took a command's secrets and registers from
    run/env/when only: never bound, the name failed until with StrictUndefined.)"""
    until = "pw not in stdout" if reads == "a secret" else "found.stdout.strip() in stdout"
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: until
hosts:
  local: [localhost]
secrets:
  pw: {{env: RB_RENDER_SECRET}}
steps:
  - name: find
    hosts: local
    run: echo hello
    register: found
  - name: wait
    hosts: local
    run: echo hello
    until: {until}
""",
    )
    proc = runbook("apply", "--yes", str(rb), cwd=tmp_path, env={"RB_RENDER_SECRET": "s3cret"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr


def pem_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_a_multi_line_secret_is_masked_line_by_line_but_not_its_armour(tmp_path: Path) -> None:
    """SPEC §8 "Masking": each line of 8+ characters of a key is masked wherever it
    appears; the ``-----BEGIN … KEY-----`` armour and an ordinary word are not."""
    key = pem_key()
    # A one-word line in the secret: an ordinary word is never masked on its own.
    secret = "certificate\n" + key.strip()
    (tmp_path / "key.pem").write_text(secret + "\n")
    lines = secret.splitlines()
    body = [ln for ln in lines if len(ln) >= 8 and not ln.startswith("-----")][1:]
    assert len(body) >= 20
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: key
hosts:
  local: [localhost]
secrets:
  key: {{file: key.pem}}
steps:
  - name: key lines
    hosts: local
    env:
      KEY: "{{{{ key }}}}"
    run: |
      printf '%s' "$KEY" | sha256sum > {tmp_path}/sum
      printf '%s\\n' "$KEY" | tac
      echo "renewed the certificate of localhost"
      echo "-----BEGIN PRIVATE KEY-----"
""",
    )
    texts = {}
    for args in (["-v"], ["--output", "json", "-v"]):
        proc = runbook("apply", "--yes", *args, str(rb), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        texts[" ".join(args)] = proc.stdout
    for run in journal_dirs(tmp_path):
        texts[f"{run.name} events"] = (run / "events.jsonl").read_text()
        shown = runbook("show", run.name, str(rb), "--host", "localhost", cwd=tmp_path)
        texts[f"show {run.name}"] = shown.stdout
    assert (tmp_path / "sum").read_text().split()[0] == sha(secret)
    for where, text in texts.items():
        for line in body:
            assert line not in text, (where, line)
        assert "-----BEGIN PRIVATE KEY-----" in text, where
        assert "-----END PRIVATE KEY-----" in text, where
        assert "renewed the certificate of localhost" in text, where
        assert text.count(STAND_IN) >= len(body), where


@pytest.mark.parametrize(
    ("run", "until"),
    [
        ("echo {{ pw | length }}", "users[pw] == 1"),  # until reads the secret
        ('printf %s "$PW"', "users[stdout] == 1"),  # ... or output that holds it
    ],
)
def test_an_until_that_fails_on_the_secret_does_not_show_it(
    tmp_path: Path, run: str, until: str
) -> None:
    """The error quotes the key it could not find with Python's repr, which escapes a
    value holding both kinds of quote: the masker knew the value as written and
    shell-quoted only, so the console and the journal showed it."""
    core = f"UnTiL{secrets.token_hex(4)}"
    secret = f'it\'s "{core}"'
    rb = write(
        tmp_path / "rb.yml",
        f"""\
name: until error
hosts:
  local: [localhost]
secrets:
  pw: {{env: RB_RENDER_SECRET}}
vars:
  users: {{alice: 1}}
env:
  PW: "{{{{ pw }}}}"
steps:
  - name: wait
    hosts: local
    run: {run}
    until: {until}
""",
    )
    proc = runbook("apply", "--yes", str(rb), cwd=tmp_path, env={"RB_RENDER_SECRET": secret})
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the command failed; it ran
    assert f"until: 'dict object' has no attribute '{STAND_IN}'" in proc.stdout, proc.stdout
    texts = {"apply": proc.stdout + proc.stderr}
    for run in journal_dirs(tmp_path):
        texts["events"] = (run / "events.jsonl").read_text()
    found = leaks(texts, forms(secret, core))
    assert not found, "\n".join(found)
