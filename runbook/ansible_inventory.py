"""Read static Ansible inventories (INI and YAML) into raw structure: hosts, groups, vars.

Operators already describe their fleet in Ansible inventories, so ``runbook`` reads them
as Ansible does rather than asking for a second copy. This module only reports structure
and the vars written at each level; mapping ``ansible_*`` vars onto host fields and
applying variable precedence is ``runbook.inventory``'s job.

Where Ansible's behaviour is surprising we keep it, so that one inventory means the same
thing to both tools, and say so here:

- INI ``key=value`` on host lines is split like a shell line (``shlex``): quotes are
  removed, and an unquoted ``#`` starts a comment even inside a word (``pw=a#b`` gives
  ``a``; write ``pw="'a#b'"``). Each value then goes through ``ast.literal_eval``:
  ``22`` is an int, ``True`` a bool, ``[1, 2]`` a list, ``'x'`` a string; anything else,
  lowercase ``true`` included, stays the string written. In ``[group:vars]`` the whole
  rest of the line after ``=`` is the value (no shell splitting, so ``a # note`` keeps
  ``# note`` unless literal_eval drops it as a Python comment, as it does after ``22``).
- Hosts listed before any section, or only under ``all``, are members of ``ungrouped``;
  a host that also appears in a real group is not. Every group without a parent becomes
  a child of ``all``, so ``effective_members(inv, "all")`` is every host.
- A group named in ``[x:children]`` or ``[x:vars]`` must be declared by an ``[x]`` or
  ``[x:children]`` section somewhere in the file; Ansible refuses the file otherwise,
  and so do we (a typo there would silently drop hosts from a step).
- ``group_vars/NAME`` and ``host_vars/NAME`` beside the inventory: the first of
  ``NAME`` (file or directory), ``NAME.yml``, ``NAME.yaml``, ``NAME.json`` that exists
  is used, as in Ansible. A directory's files (no extension, ``.yml``, ``.yaml``,
  ``.json``; hidden and ``~`` backups skipped; subdirectories walked) are merged in sorted
  order, later files replacing earlier keys. These vars replace the inline vars of the
  same group or host. Ansible ranks ``group_vars/all`` above *every* group's inline
  vars; folding both into one dict per group cannot express that corner.

We are stricter than Ansible where it only warns and then drops data: unknown keys in a
YAML group, duplicate keys, non-mapping ``hosts``/``children``/``vars``, empty or reversed
ranges, and ``host:port`` with a non-numeric port are errors with a file:line:col.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
import string
from dataclasses import dataclass, field
from typing import Any

import yaml

from runbook.errors import InventoryError, Position

_YAML_SUFFIXES = (".yml", ".yaml", ".json")
_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")
_YAML_SECTIONS = ("hosts", "children", "vars")
_MAX_RANGE = 100_000  # hosts from one pattern; guards against `h[0:99999999]`
_VAULT_HEADER = "$ANSIBLE_VAULT;"

# Ansible's own regexes (plugins/inventory/ini.py), so the same names are accepted.
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_SHELL_SPECIAL = re.compile(r"[\"'\\#]")  # with none of these, shlex only splits on blanks
_SHELL_WORD = re.compile(r"[^ \t\r\n]+")  # shlex's whitespace
_BRACKETED_IPV6 = re.compile(r"^\[([0-9A-Fa-f:.]+(?:%[\w.]+)?)\](?::(\d*))?$")

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_KEY_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")
)


@dataclass
class RawGroup:
    """One group as written: direct members, child groups, and its own vars."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    position: Position | None = None


@dataclass
class RawInventory:
    """Hosts (with their own vars, raw) and groups, both in order of first appearance."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, RawGroup] = field(default_factory=dict)
    host_positions: dict[str, Position] = field(default_factory=dict)


def load_inventory(path: str | os.PathLike[str]) -> RawInventory:
    """Parse the inventory at ``path`` plus ``group_vars/`` and ``host_vars/`` beside it.

    The format is YAML for ``.yml``/``.yaml``/``.json`` files, or for any other file
    (``.ini`` excepted) whose content is a YAML mapping that looks like an inventory;
    INI otherwise. Raises ``InventoryError`` (with file:line:col where one exists) for an
    unreadable, non-UTF-8, vault-encrypted or malformed file, a bad host range, a group
    cycle, or a group referenced but never declared.
    """
    file = os.fspath(path)
    text = _read_text(file)
    suffix = os.path.splitext(file)[1].lower()
    if suffix in _YAML_SUFFIXES or (suffix != ".ini" and _looks_like_yaml_inventory(text)):
        builder = _parse_yaml(text, file)
    else:
        builder = _parse_ini(text, file)
    inv = builder.finish()
    _load_vars_dirs(inv, os.path.dirname(os.path.abspath(file)))
    all_group = inv.groups.get("all")
    if all_group is not None and not (all_group.hosts or all_group.children or all_group.vars):
        del inv.groups["all"]
    return inv


def effective_members(inv: RawInventory, group: str) -> list[str]:
    """Every host of ``group``, its children's included, deduplicated.

    Order: the group's own hosts, then each child's members depth-first in the order the
    children were written, so a rolling ``serial`` walks hosts as the file lists them.
    Raises ``InventoryError`` for an unknown group; ``all`` is never unknown (an empty
    inventory has no ``all`` group, and then no hosts either).
    """
    if group not in inv.groups:
        if group == "all":
            return list(inv.hosts)
        known = ", ".join(sorted(inv.groups)) or "none"
        raise InventoryError(f"no group {group!r} in the inventory (groups: {known})")
    members: dict[str, None] = {}
    seen: set[str] = set()
    stack = [group]
    while stack:
        name = stack.pop()
        if name in seen or name not in inv.groups:
            continue  # cycles are rejected on load; hand-built inventories may still have one
        seen.add(name)
        g = inv.groups[name]
        members.update(dict.fromkeys(g.hosts))
        stack.extend(reversed(g.children))
    return list(members)


# --- shared building ----------------------------------------------------------------


class _Builder:
    """Accumulates hosts and groups the way Ansible's InventoryData does."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.hosts: dict[str, dict[str, Any]] = {}
        self.host_positions: dict[str, Position] = {}
        # Ansible creates these two first; empty ones are dropped in finish().
        self.groups: dict[str, RawGroup] = {
            "all": RawGroup("all"),
            "ungrouped": RawGroup("ungrouped"),
        }
        self.edges: dict[tuple[str, str], Position] = {}
        self._members: dict[str, set[str]] = {}  # a set per group: ranges make big groups

    def pos(self, line: int, col: int = 1) -> Position:
        return Position(self.file, line, col)

    def group(self, name: str, position: Position | None) -> RawGroup:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = RawGroup(name, position=position)
        elif g.position is None:
            g.position = position
        return g

    def add_host(self, group: str, name: str, hostvars: dict[str, Any], position: Position) -> None:
        self.hosts.setdefault(name, {}).update(hostvars)
        self.host_positions.setdefault(name, position)
        members = self._members.setdefault(group, set())
        if name not in members:
            members.add(name)
            self.group(group, position).hosts.append(name)

    def add_child(self, parent: str, child: str, position: Position) -> None:
        if child == "all":
            raise InventoryError(
                f"group 'all' cannot be a child of {parent!r}: it already contains every host",
                position,
            )
        self.group(child, position)
        g = self.group(parent, position)
        if child not in g.children:
            g.children.append(child)
            self.edges[(parent, child)] = position

    def finish(self) -> RawInventory:
        """Reject cycles, then reconcile ``ungrouped`` and ``all`` as Ansible does."""
        self._check_cycles()
        grouped = {
            h
            for name, g in self.groups.items()
            if name not in ("all", "ungrouped")
            for h in g.hosts
        }
        ungrouped = self.groups["ungrouped"]
        listed = [h for h in ungrouped.hosts if h not in grouped]
        only_in_all = [h for h in self.hosts if h not in grouped and h not in listed]
        ungrouped.hosts = listed + only_in_all
        if not (ungrouped.hosts or ungrouped.children or ungrouped.vars):
            del self.groups["ungrouped"]
        has_parent = {child for g in self.groups.values() for child in g.children}
        top = self.groups["all"]
        orphans = [n for n in self.groups if n != "all" and n not in has_parent]
        # Ansible makes 'ungrouped' the first child of 'all' when it creates them.
        first = [n for n in orphans if n == "ungrouped"]
        top.children = first + top.children + [n for n in orphans if n != "ungrouped"]
        return RawInventory(self.hosts, self.groups, self.host_positions)

    def _check_cycles(self) -> None:
        done: set[str] = set()
        for root in self.groups:
            if root in done:
                continue
            # Iterative DFS keeping the current path, so the error can spell the cycle out.
            path = [root]
            iters = [iter(self.groups[root].children)]
            while iters:
                child = next(iters[-1], None)
                if child is None:
                    iters.pop()
                    done.add(path.pop())
                elif child in path:
                    cycle = path[path.index(child) :] + [child]
                    raise InventoryError(
                        f"group cycle: {' -> '.join(cycle)}; a group cannot contain itself, "
                        "remove one of these child entries",
                        self.edges.get((path[-1], child)),
                    )
                elif child not in done:
                    path.append(child)
                    iters.append(iter(self.groups[child].children))


# --- reading ------------------------------------------------------------------------


def _read_text(file: str) -> str:
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
    return _decode(data, file)


def _decode(data: bytes, file: str) -> str:
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
    if text.startswith(_VAULT_HEADER):
        raise InventoryError(
            "encrypted with ansible-vault, which runbook cannot decrypt; "
            "decrypt it or keep secrets in runbook `secrets:`",
            Position(file, 1, 1),
        )
    return text


def _lines(text: str) -> list[str]:
    # Not str.splitlines(): it also splits on form feeds and U+2028, which editors do not
    # count as lines, and the line numbers in errors must match the operator's editor.
    return re.split(r"\r\n|\r|\n", text)


# --- host patterns ------------------------------------------------------------------


class _PatternError(Exception):
    """A host pattern is malformed; ``offset`` is relative to the pattern's start."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def _split_port(pattern: str) -> tuple[str, int | None]:
    """``web1:2222`` -> (``web1``, 2222); IPv6 literals and ranges keep their colons."""
    m = _BRACKETED_IPV6.match(pattern)
    if m and ("::" in m.group(1) or m.group(1).count(":") >= 3):
        return m.group(1), _port(m.group(2), pattern) if m.group(2) is not None else None
    depth, colons = 0, []
    for i, ch in enumerate(pattern):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == ":" and depth == 0:
            colons.append(i)
    if not colons:
        return pattern, None
    if len(colons) > 1:
        return pattern, None  # a bare IPv6 address such as fe80::1
    i = colons[0]
    return pattern[:i], _port(pattern[i + 1 :], pattern, i + 1)


def _port(text: str, pattern: str, offset: int = 0) -> int:
    if not text:
        raise _PatternError(
            f"host {pattern!r} ends in ':'; write a port after it or remove it", offset - 1
        )
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise _PatternError(f"port {text!r} in {pattern!r} is not a number 1-65535", offset)
    return int(text)


def _expand(pattern: str, base: int = 0) -> list[str]:
    """Expand Ansible ranges: ``db[01:10]``, ``node-[a:f]``, ``h[1:10:2]``, several per name."""
    start = pattern.find("[")
    if start < 0:
        if "]" in pattern:
            raise _PatternError("']' without a matching '['", base + pattern.index("]"))
        return [pattern]
    end = pattern.find("]", start)
    if end < 0:
        raise _PatternError("'[' without a matching ']'", base + start)
    head, spec, tail = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    where = base + start
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise _PatternError(f"host range [{spec}] must be [begin:end] or [begin:end:step]", where)
    first, last = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not last:
        raise _PatternError(f"host range [{spec}] has no end", where)
    if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
        raise _PatternError(f"host range [{spec}]: step must be a positive integer", where)
    step = int(step_text)
    letters = string.ascii_letters
    if len(first) == len(last) == 1 and first in letters and last in letters:
        lo, hi = letters.index(first), letters.index(last)
        if lo > hi:
            raise _PatternError(
                f"host range [{spec}] is empty: {first!r} comes after {last!r}", where
            )
        items = list(letters[lo : hi + 1 : step])
    elif first.isascii() and first.isdigit() and last.isascii() and last.isdigit():
        lo, hi = int(first), int(last)
        if lo > hi:
            raise _PatternError(f"host range [{spec}] is empty: {lo} > {hi}", where)
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        if width and len(last) != width:
            raise _PatternError(
                f"zero-padded host range [{spec}] needs begin and end of the same width", where
            )
        if (hi - lo) // step + 1 > _MAX_RANGE:
            raise _PatternError(f"host range [{spec}] has more than {_MAX_RANGE} hosts", where)
        items = [str(n).zfill(width) for n in range(lo, hi + 1, step)]
    else:
        raise _PatternError(f"host range [{spec}] needs two numbers or two single letters", where)
    names: list[str] = []
    for item in items:
        # Only the tail can hold further ranges; offsets there shift by the expansion.
        names.extend(head + item + t for t in _expand(tail, base + end + 1))
        if len(names) > _MAX_RANGE:
            raise _PatternError(f"host pattern expands to more than {_MAX_RANGE} hosts", where)
    return names


def _expand_host(pattern: str) -> tuple[list[str], int | None]:
    """Host pattern -> (names, port or None), raising ``_PatternError``."""
    name, port = _split_port(pattern)
    if not name:
        raise _PatternError("empty host name")
    if name.strip() == "---":
        raise _PatternError("'---' is a YAML document marker; name a YAML inventory *.yml")
    if any(ch.isspace() for ch in name):
        raise _PatternError(f"host name {name!r} contains whitespace")
    return _expand(name), port


# --- INI ----------------------------------------------------------------------------


def _parse_ini(text: str, file: str) -> _Builder:
    """Parse INI line by line, mirroring Ansible's state machine (ungrouped/hosts first)."""
    b = _Builder(file)
    group, state = "ungrouped", "hosts"
    declared = {"all", "ungrouped"}
    # Groups named by [x:vars] or in [y:children] before/without a declaration.
    references: list[tuple[str, str, Position]] = []
    for lineno, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        col = len(raw) - len(raw.lstrip()) + 1
        here = b.pos(lineno, col)
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(
                    f"section [{group}:{state}] has unknown type {state!r}; "
                    "use [name], [name:vars] or [name:children]",
                    here,
                )
            b.group(group, here)
            if state == "vars":
                references.append((group, f"section [{group}:vars] is for", here))
            else:
                declared.add(group)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(
                f"invalid section header {line!r}: a group name has no spaces, ':' or ']'; "
                "use [name], [name:vars] or [name:children]",
                here,
            )
        if state == "hosts":
            _ini_host_line(b, group, raw, lineno)
        elif state == "vars":
            key, sep, value = line.partition("=")
            key = key.strip()
            if not sep:
                raise InventoryError(f"expected key=value in [{group}:vars], got {line!r}", here)
            if not key or any(ch.isspace() for ch in key):
                raise InventoryError(f"invalid variable name {key!r} in [{group}:vars]", here)
            b.groups[group].vars[key] = _literal(value.strip())
        else:
            m = _GROUP_NAME.match(line)
            if not m:
                raise InventoryError(
                    f"expected one group name per line in [{group}:children], got {line!r}",
                    here,
                )
            child = m.group(1)
            b.add_child(group, child, here)
            references.append((child, f"section [{group}:children] lists", here))
    for name, what, where in references:
        if name not in declared:
            raise InventoryError(
                f"{what} group {name!r}, which is never declared; add a [{name}] section "
                "(an empty one is enough) or fix the name",
                where,
            )
    return b


def _ini_host_line(b: _Builder, group: str, raw: str, lineno: int) -> None:
    tokens = _shell_tokens(raw, b.pos(lineno))
    if not tokens:
        return  # defensive: str.strip() and shlex disagree on a few blank characters
    (pattern_col, pattern), rest = tokens[0], tokens[1:]
    try:
        names, port = _expand_host(pattern)
    except _PatternError as e:
        raise InventoryError(str(e), b.pos(lineno, pattern_col + e.offset)) from None
    hostvars: dict[str, Any] = {}
    if port is not None:
        hostvars["ansible_port"] = port
    for col, token in rest:
        key, sep, value = token.partition("=")
        if not sep:
            raise InventoryError(
                f"expected key=value after host {pattern!r}, got {token!r}",
                b.pos(lineno, col),
            )
        if not key:
            raise InventoryError(f"empty variable name in {token!r}", b.pos(lineno, col))
        hostvars[key] = _literal(value)
    for name in names:
        b.add_host(group, name, hostvars, b.pos(lineno, pattern_col))


def _shell_tokens(raw: str, where: Position) -> list[tuple[int, str]]:
    """Split like Ansible's ``shlex.split(line, comments=True)``, keeping 1-based columns."""
    if not _SHELL_SPECIAL.search(raw):  # the common line; shlex reads char by char
        return [(m.start() + 1, m.group()) for m in _SHELL_WORD.finditer(raw)]
    stream = io.StringIO(raw)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    tokens: list[tuple[int, str]] = []
    while True:
        offset = stream.tell()
        while offset < len(raw) and raw[offset] in lexer.whitespace:
            offset += 1
        try:
            token = lexer.get_token()
        except ValueError as e:  # "No closing quotation", "No escaped character"
            raise InventoryError(
                f"{str(e).lower()} in host line", Position(where.file, where.line, offset + 1)
            ) from None
        if token is None:
            return tokens
        tokens.append((offset + 1, token))


def _literal(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal if it is one, else the text."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value, text)


def _plain(value: Any, text: str) -> Any:
    # Keep to what YAML and JSON can carry, as Ansible 2.19 does: tuples and sets become
    # lists, bytes text; complex numbers and Ellipsis fall back to what was written.
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v, repr(v)) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_plain(v, repr(v)) for v in sorted(value, key=repr)]
    if isinstance(value, dict):
        return {k: _plain(v, repr(v)) for k, v in value.items()}
    return text


# --- YAML ---------------------------------------------------------------------------


def _looks_like_yaml_inventory(text: str) -> bool:
    """True for a YAML mapping with ``all``/``plugin`` or a group with hosts/children/vars."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return False
    if not isinstance(root, yaml.MappingNode):
        return False
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value in ("all", "plugin"):
            return True
        if isinstance(value, yaml.MappingNode) and any(
            isinstance(k, yaml.ScalarNode) and k.value in _YAML_SECTIONS for k, _ in value.value
        ):
            return True
    return False


class _YamlReader:
    """Walks the composed node tree, so every group and host keeps its line and column."""

    def __init__(self, text: str, file: str) -> None:
        self.b = _Builder(file)
        self.loader = _Loader(text)
        self.walked: set[tuple[str, int]] = set()

    def pos(self, node: yaml.Node) -> Position:
        return self.b.pos(node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, message: str, node: yaml.Node) -> InventoryError:
        return InventoryError(message, self.pos(node))

    def read(self) -> _Builder:
        try:
            root = self.loader.get_single_node()
        except yaml.YAMLError as e:
            raise _yaml_error(e, self.b.file) from None
        finally:
            self.loader.dispose()
        if root is None or _is_null(root):
            raise InventoryError("empty YAML inventory", Position(self.b.file))
        if not isinstance(root, yaml.MappingNode):
            raise self.error("a YAML inventory is a mapping of group names (usually `all:`)", root)
        for key, _ in self.pairs(root):
            if key.value == "plugin":
                raise self.error(
                    "this is an inventory plugin configuration; runbook reads only static "
                    "inventories (export one with `ansible-inventory --list -y`)",
                    key,
                )
        for key, value in self.pairs(root):
            self.group(self.name(key, "group"), key, value, parent=None)
        return self.b

    def group(self, name: str, key: yaml.Node, data: yaml.Node, parent: str | None) -> None:
        position = self.pos(key)
        if parent is None:
            self.b.group(name, position)
        else:
            self.b.add_child(parent, name, position)
        if _is_null(data):
            return
        if not isinstance(data, yaml.MappingNode):
            raise self.error(
                f"group {name!r} must be a mapping with hosts, children or vars (or empty)", data
            )
        # A group reached twice through an alias adds nothing new; skipping it also stops
        # recursive aliases and alias fan-out ("billion laughs") from walking forever.
        if (name, id(data)) in self.walked:
            return
        self.walked.add((name, id(data)))
        for section_key, section in self.pairs(data):
            section_name = section_key.value
            if section_name not in _YAML_SECTIONS:
                raise self.error(
                    f"unexpected key {section_name!r} in group {name!r}; "
                    "a group has only hosts, children and vars",
                    section_key,
                )
            if _is_null(section):
                continue
            if section_name == "vars":
                if not isinstance(section, yaml.MappingNode):
                    raise self.error(f"vars of group {name!r} must be a mapping", section)
                self.b.groups[name].vars.update(self.value(section))
            elif section_name == "hosts":
                self.hosts(name, section)
            else:
                for child_key, child in self.entries(name, "children", section):
                    self.group(self.name(child_key, "group"), child_key, child, parent=name)

    def hosts(self, group: str, section: yaml.Node) -> None:
        for key, data in self.entries(group, "hosts", section):
            pattern = self.name(key, "host")
            try:
                names, port = _expand_host(pattern)
            except _PatternError as e:
                raise InventoryError(
                    str(e),
                    self.b.pos(key.start_mark.line + 1, key.start_mark.column + 1 + e.offset),
                ) from None
            if _is_null(data):
                hostvars: dict[str, Any] = {}
            elif isinstance(data, yaml.MappingNode):
                hostvars = self.value(data)
            else:
                raise self.error(
                    f"host {pattern!r} must map to its vars (a mapping) or to nothing", data
                )
            if port is not None:
                hostvars = {"ansible_port": port, **hostvars}
            for host in names:
                self.b.add_host(group, host, hostvars, self.pos(key))

    def entries(
        self, group: str, section: str, node: yaml.Node
    ) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """Pairs of a hosts/children section; a lone name is allowed, as in Ansible."""
        if isinstance(node, yaml.ScalarNode):
            return [(node, yaml.ScalarNode("tag:yaml.org,2002:null", "", node.start_mark))]
        if isinstance(node, yaml.SequenceNode):
            raise self.error(
                f"{section} of group {group!r} must be a mapping, not a list: write each name "
                "as a key ending in ':' (`web1:`), optionally with its vars under it",
                node,
            )
        return self.pairs(node)

    def pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """Key/value nodes of a structural mapping: merge keys resolved, duplicates refused."""
        seen: dict[str, yaml.Node] = {}
        for key, _ in node.value:
            if key.tag == _MERGE_TAG:
                continue
            if not isinstance(key, yaml.ScalarNode):
                raise self.error("a group, host or section name must be plain text", key)
            if key.value in seen:
                first = seen[key.value].start_mark.line + 1
                raise self.error(f"duplicate key {key.value!r} (first at line {first})", key)
            seen[key.value] = key
        return list(self.merged(node, set()).values())

    def merged(
        self, node: yaml.MappingNode, active: set[int]
    ) -> dict[str, tuple[yaml.ScalarNode, yaml.Node]]:
        """YAML ``<<`` merge without mutating nodes (PyYAML's flatten_mapping does).

        Earlier merge sources win over later ones, the mapping's own keys over all.
        """
        if id(node) in active:
            raise self.error("a merge key (<<) refers to the mapping it is in", node)
        active = active | {id(node)}
        result: dict[str, tuple[yaml.ScalarNode, yaml.Node]] = {}
        own = []
        for key, value in node.value:
            if key.tag != _MERGE_TAG:
                own.append((key, value))
                continue
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode):
                    raise self.error("a merge key (<<) must refer to a mapping", source)
                result.update(self.merged(source, active))
        for key, value in own:
            if not isinstance(key, yaml.ScalarNode):
                raise self.error("a group, host or section name must be plain text", key)
            result[key.value] = (key, value)
        return result

    def name(self, key: yaml.ScalarNode, what: str) -> str:
        if key.tag not in _PLAIN_KEY_TAGS:
            raise self.error(f"unsupported YAML tag {key.tag!r} on a {what} name", key)
        if not key.value or key.tag == "tag:yaml.org,2002:null":
            raise self.error(f"empty {what} name", key)
        if what == "group" and any(ch.isspace() for ch in key.value):
            raise self.error(f"group name {key.value!r} contains whitespace", key)
        return key.value

    def value(self, node: yaml.Node) -> dict[str, Any]:
        _check_expansion(node, self.b.file)
        try:
            return dict(self.loader.construct_document(node))
        except yaml.YAMLError as e:
            raise _yaml_error(e, self.b.file) from None


def _yaml_error(e: yaml.YAMLError, file: str) -> InventoryError:
    """A PyYAML error as an operator-facing one, at the mark PyYAML found."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file)
    if isinstance(e, yaml.constructor.ConstructorError):
        return InventoryError(
            f"{e.problem}; runbook reads plain YAML only (no ansible-vault `!vault` values, "
            "`!unsafe` or language-specific tags)",
            where,
        )
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e)
    return InventoryError(f"not valid YAML: {problem}", where)


_MAX_VALUES = 200_000  # as runbook.yamlpos: what a var may expand to through aliases


def _check_expansion(node: yaml.Node, file: str) -> None:
    """Refuse values whose aliases expand past ``_MAX_VALUES`` (billion laughs) or that
    contain themselves, before PyYAML builds them: built, they are shared and small, but
    printing or templating them expands them for ever."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = _MAX_VALUES + 1  # met again while inside itself: a recursive alias
        if depth > 100:
            total = _MAX_VALUES + 1
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(c, depth + 1) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        else:
            total = 1
        if total > _MAX_VALUES:
            raise InventoryError(
                f"value too large or too deeply nested (alias expansion?); "
                f"limit is {_MAX_VALUES} values",
                Position(file, n.start_mark.line + 1, n.start_mark.column + 1),
            )
        sizes[id(n)] = total
        return total

    size(node, 0)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _parse_yaml(text: str, file: str) -> _Builder:
    return _YamlReader(text, file).read()


# --- group_vars/ and host_vars/ -----------------------------------------------------


def _load_vars_dirs(inv: RawInventory, base: str) -> None:
    group_dir = os.path.join(base, "group_vars")
    if os.path.isdir(group_dir):
        for name, g in inv.groups.items():
            for file in _vars_files(group_dir, name):
                g.vars.update(_load_vars_file(file))
    host_dir = os.path.join(base, "host_vars")
    if os.path.isdir(host_dir):
        for name, hostvars in inv.hosts.items():
            for file in _vars_files(host_dir, name):
                hostvars.update(_load_vars_file(file))


def _vars_files(directory: str, name: str) -> list[str]:
    """The files Ansible's host_group_vars plugin reads for ``name``, in merge order."""
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return []  # such a name cannot be a plain file beside the inventory
    for suffix in _VARS_SUFFIXES:
        candidate = os.path.join(directory, name + suffix)
        if os.path.isdir(candidate):
            return _dir_files(candidate)
        if os.path.isfile(candidate):
            return [candidate]
    return []


def _dir_files(directory: str) -> list[str]:
    found: list[str] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        full = os.path.join(directory, entry)
        suffix = os.path.splitext(entry)[1]
        if os.path.isdir(full) and not suffix:
            found.extend(_dir_files(full))
        elif os.path.isfile(full) and suffix in _VARS_SUFFIXES:
            found.append(full)
    return found


def _load_vars_file(file: str) -> dict[str, Any]:
    text = _read_text(file)
    if file.endswith(".json"):
        try:
            data = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as e:
            where = Position(file, e.lineno, e.colno)
            raise InventoryError(f"not valid JSON: {e.msg}", where) from None
    else:
        loader = _Loader(text)  # a SafeLoader: builds no Python objects
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expansion(node, file)
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as e:
            raise _yaml_error(e, file) from None
        finally:
            loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(
            f"a vars file must be a mapping of variable names to values, not a "
            f"{type(data).__name__}",
            Position(file, 1, 1),
        )
    return data
