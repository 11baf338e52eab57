"""What a copy would change, as ``plan --check`` shows it (pure part): unchanged, mode,
a unified diff, and what may never be shown (a secret's text or size, binary bytes)."""

from __future__ import annotations

import hashlib

from runbook.review.filediff import MAX_LINES, _Side, diff_lines


def side(data: bytes, mode: int | None = 0o644, keep: bool = True) -> _Side:
    return _Side(data if keep else None, len(data), hashlib.sha256(data).hexdigest(), mode)


def lines(old: _Side, new: _Side, secret: bool = False, mode: int | None = None) -> list[str]:
    return diff_lines(old, new, "/etc/app.conf", secret, mode, "web1")


def test_the_same_bytes_are_unchanged() -> None:
    assert lines(side(b"a\n"), side(b"a\n")) == ["unchanged"]
    assert lines(side(b"a\n"), side(b"a\n"), mode=0o600) == [
        "mode 0644 → 0600",
        "content unchanged",
    ]


def test_text_is_a_unified_diff_of_the_host_file_against_the_planned_one() -> None:
    old = side(b"listen = 80\nworkers = 2\nlog = info\n")
    new = side(b"listen = 8080\nworkers = 2\nlog = info\n")
    assert lines(old, new) == [
        "--- /etc/app.conf on web1",
        "+++ /etc/app.conf planned",
        "@@ -1,3 +1,3 @@",
        "-listen = 80",
        "+listen = 8080",
        " workers = 2",
        " log = info",
    ]


def test_a_secret_template_shows_no_text_no_size_no_digest() -> None:
    old, new = side(b"password = old-pw\n"), side(b"password = new-longer-pw\n")
    shown = lines(old, new, secret=True)
    assert shown == ["content changed (not shown: the template reads a secret)"]
    assert lines(old, old, secret=True) == ["unchanged"]


def test_binary_and_large_content_shows_sizes_and_digests() -> None:
    old, new = side(b"\x89PNG\0\1\2"), side(b"\x89PNG\0\1\2\3")
    (shown,) = lines(old, new)
    assert shown == (f"binary: 7 → 8 bytes, sha256:{old.sha256[:16]} → sha256:{new.sha256[:16]}")
    assert lines(side(b"\xff\xfe text"), side(b"text"))[0].startswith("binary: ")
    big = side(b"x" * 10, keep=False)
    assert lines(big, side(b"y\n"))[0].startswith("large: 10 → 2 bytes, sha256:")


def test_control_characters_in_a_host_file_are_escaped() -> None:
    old = side(b"title = \x1b]0;owned\x07\n")
    shown = lines(old, side(b"title = x\n"))
    assert "-title = \\e]0;owned\\x07" in shown
    assert not any("\x1b" in line for line in shown)


def test_a_long_diff_is_cut_and_counted() -> None:
    old = side(b"".join(b"%d\n" % i for i in range(1000)))
    new = side(b"".join(b"%d!\n" % i for i in range(1000)))
    shown = lines(old, new)
    assert len(shown) == MAX_LINES + 1
    assert shown[-1].startswith("... (") and shown[-1].endswith(" more diff lines)")
