"""``playbooks/cert-rotation.yml``, byte for byte, against three real sshd hosts.

Each fleet host stands in for a web server: its TLS directory is a directory of this
test and its "reload" appends a line to a file there. The certificate and its key are
made fresh here (the key reaches the playbook only as the secret ``TLS_PRIVATE_KEY``).
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import finished, runbook
from tests.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
WEB = ["web1", "web2", "web3"]
COPIES = ("Ship the certificate", "Ship the private key", "Render the TLS config")
CHECK = "Check that certificate and key belong together"
RELOAD = "Reload the web server where something changed"

pytestmark = pytest.mark.ssh


@pytest.fixture
def web(tmp_path: Path, fleet: Fleet) -> Path:
    """A copy of the playbook whose inventory/web.ini points at fleet hosts h1..h3."""
    shutil.copy(PLAYBOOKS / "cert-rotation.yml", tmp_path / "cert-rotation.yml")
    shutil.copytree(PLAYBOOKS / "files" / "cert-rotation", tmp_path / "files" / "cert-rotation")
    key = tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-subj", "/CN=www.example.internal", "-days", "30", "-keyout", str(key)]
        + ["-out", str(tmp_path / "files" / "cert-rotation" / "server.crt")],
        check=True,
        capture_output=True,
    )
    lines = []
    for name, fh in zip(WEB, fleet, strict=False):
        tls = tmp_path / "hosts" / name / "tls"
        tls.mkdir(parents=True)
        lines.append(
            f"{name} ansible_host=127.0.0.1 ansible_port={fh.port} ansible_user=root "
            f"ansible_ssh_private_key_file={fleet.client_key} tls_dir={tls} "
            f'reload_command="echo reloaded >> {tls}/reloads"'
        )
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "web.ini").write_text(
        "[web]\n" + "\n".join(lines) + "\n\n[web:vars]\nansible_become=true\n"
    )
    (tmp_path / "known_hosts").write_text(fleet.known_hosts_text())
    return tmp_path


def _apply(web: Path) -> dict[str, dict[str, dict]]:
    """Apply the playbook; step → host → its command_finished event."""
    proc = runbook(
        "apply",
        str(web / "cert-rotation.yml"),
        "--yes",
        "--output",
        "json",
        "--known-hosts",
        str(web / "known_hosts"),
        env={"TLS_PRIVATE_KEY": (web / "server.key").read_text().strip()},
        cwd=web,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    out: dict[str, dict[str, dict]] = {}
    for e in finished(proc.stdout):
        out.setdefault(e["step"], {})[e["host"]] = e
    key_line = (web / "server.key").read_text().splitlines()[1]
    assert key_line not in proc.stdout + proc.stderr  # the key reaches server.key only
    return out


def _reloads(web: Path, host: str) -> int:
    path = web / "hosts" / host / "tls" / "reloads"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_cert_rotation_reloads_only_where_something_changed(web: Path) -> None:
    first = _apply(web)
    for step in COPIES:
        assert {h: (e["status"], e["changed"]) for h, e in first[step].items()} == dict.fromkeys(
            WEB, ("ok", True)
        )
    assert {e["status"] for e in first[CHECK].values()} == {"ok"}
    assert [_reloads(web, h) for h in WEB] == [1, 1, 1]
    for h in WEB:
        tls = web / "hosts" / h / "tls"
        assert (tls / "server.key").read_text() == (web / "server.key").read_text()
        assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600
        assert f"ssl_certificate      {tls}/server.crt;" in (tls / "tls.conf").read_text()

    # A second apply: every copy unchanged, nothing checked, nothing reloaded.
    second = _apply(web)
    for step in COPIES:
        assert {h: (e["status"], e["changed"]) for h, e in second[step].items()} == dict.fromkeys(
            WEB, ("ok", False)
        )
    assert {e["status"] for s in (CHECK, RELOAD) for e in second[s].values()} == {"skipped"}
    assert [_reloads(web, h) for h in WEB] == [1, 1, 1]

    # web2's config drifted: only web2 gets it back, and only web2 reloads.
    (web / "hosts" / "web2" / "tls" / "tls.conf").write_text("edited by hand\n")
    third = _apply(web)
    changed = {h for s in COPIES for h, e in third[s].items() if e["changed"]}
    assert changed == {"web2"}
    assert {h: e["status"] for h, e in third[RELOAD].items()} == {
        "web1": "skipped",
        "web2": "ok",
        "web3": "skipped",
    }
    assert [_reloads(web, h) for h in WEB] == [1, 2, 1]
