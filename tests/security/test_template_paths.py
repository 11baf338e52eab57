"""Controller paths built from templates stay in the runbook's directory (SPEC §6; issue 24).

``copy: {src: "files/{{ conf }}"}`` with ``conf`` from a dynamic inventory shipped any
controller file (``../../.ssh/id_ed25519``) to a host; ``fetch: {dest: "{{ dir }}/x"}``
wrote wherever ``dir`` said. A copy's src and a fetch's dest built from a template must
stay inside the runbook's directory, unless the runbook writes them absolute.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import journal_dirs, runbook, write


def _project(tmp_path: Path, conf: str, step: str) -> Path:
    project = tmp_path / "project"
    (project / "files").mkdir(parents=True)
    write(project / "files" / "app.conf", "inside\n")
    inv = write(
        project / "inv.py",
        f"#!{sys.executable}\nimport json\nprint(json.dumps("
        f'{{"web": {{"hosts": ["w1"], "vars": {{"conf": {conf!r}, '
        f'"ansible_connection": "local"}}}}}}))\n',
    )
    inv.chmod(0o755)
    return write(
        project / "rb.yml",
        f"name: paths\ninventory: inv.py\nsteps:\n  - name: s\n    hosts: web\n    {step}\n",
    )


@pytest.mark.parametrize(
    "conf,step,shown",
    [
        (
            "../../outside",
            "copy: {src: 'files/{{ conf }}', dest: '%s/copied'}",
            "src 'files/../../outside'",
        ),
        ("/etc/hostname", "copy: {src: '{{ conf }}', dest: '%s/copied'}", "src '/etc/hostname'"),
        ("..", "fetch: {src: /etc/hostname, dest: '{{ conf }}/fetched'}", "dest '../fetched'"),
    ],
    ids=["copy-src-climbs", "copy-src-absolute", "fetch-dest-climbs"],
)
def test_a_templated_controller_path_may_not_leave_the_runbook(
    tmp_path: Path, conf: str, step: str, shown: str
) -> None:
    write(tmp_path / "outside", "controller secret\n")
    rb = _project(tmp_path, conf, step.replace("%s", str(tmp_path)))
    for command in ("plan", "apply"):
        args = [command, "--yes", str(rb)] if command == "apply" else [command, str(rb)]
        done = runbook(*args, cwd=rb.parent)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"{shown}, rendered from" in done.stderr, done.stderr
        assert "is outside the runbook's directory" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "project"]
    assert journal_dirs(rb.parent) == []


def test_paths_inside_or_written_absolute_still_work(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    rb = _project(
        tmp_path,
        "app.conf",
        f"copy: {{src: 'files/{{{{ conf }}}}', dest: '{dest}/a.conf'}}\n"
        f"  - name: absolute\n    hosts: web\n"
        f"    copy: {{src: '{tmp_path}/project/files/{{{{ conf }}}}', dest: '{dest}/b.conf'}}\n"
        f"  - name: back\n    hosts: web\n"
        f"    fetch: {{src: '{dest}/a.conf', dest: 'got/{{{{ host.name }}}}/a.conf'}}",
    )
    done = runbook("apply", "--yes", str(rb), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (dest / "a.conf").read_text() == (dest / "b.conf").read_text() == "inside\n"
    assert (rb.parent / "got" / "w1" / "a.conf").read_text() == "inside\n"
