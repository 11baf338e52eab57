"""Plans as JSON: ``plan --format json``, saved plans (``plan --out``) and the journal copy.

A saved plan holds exactly the rendered commands, so ``apply PLAN.json`` runs what was
reviewed. Secrets are stored as ``((secret:NAME))`` tokens and re-read at apply time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from runbook.command import Command
from runbook.errors import InputError, Position
from runbook.model import Host
from runbook.plan import Plan, PlannedStep
from runbook.spec import ExecSpec

FORMAT = "runbook-plan"
VERSION = 1


def plan_to_dict(plan: Plan, text: Callable[[str], str] = str) -> dict[str, Any]:
    """``text`` is applied to every command and env value (masking or tokenizing secrets)."""
    hosts: dict[str, Any] = {}
    steps = []
    for step in plan.steps:
        batches = []
        for batch in step.batches:
            out = []
            for c in batch:
                hosts.setdefault(c.host.name, c.host.to_dict())
                d = c.to_dict()
                d["cmd"] = text(d["cmd"])
                if "env" in d:
                    d["env"] = {k: text(v) for k, v in d["env"].items()}
                out.append(d)
            batches.append(out)
        steps.append(
            {
                "name": step.name,
                "line": step.position.line,
                "hosts": step.hosts,
                # The policy, always written; max_failures as the resolved count.
                "on_failure": step.on_failure,
                "max_failures": step.max_failures,
                "serial": step.serial,
                "run_once": step.run_once,
                "local": step.local,
                "tags": list(step.tags),
                "confirm": step.confirm,
                "batches": batches,
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "runbook": plan.name,
        "source": plan.source,
        "digest": plan.digest,
        "secrets": list(plan.secret_names),
        "hosts": hosts,
        "steps": steps,
    }


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def save_plan(
    plan: Plan, path: str, tokenize: Callable[[str], str], extra: dict[str, Any] | None = None
) -> None:
    data = plan_to_dict(plan, tokenize)
    data.update(extra or {})
    data["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(data))


def read_saved_plan(path: str) -> dict[str, Any] | None:
    """The JSON of a saved plan, or ``None`` when ``path`` is not one (a runbook)."""
    if not path.endswith(".json"):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise InputError(f"cannot read plan: {exc.strerror}", Position(path)) from None
    except ValueError:
        return None  # not JSON: the runbook loader will say what is wrong, with a line
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None  # a runbook written as JSON (YAML's subset)
    return data


def plan_from_dict(data: Mapping[str, Any], path: str, text: Callable[[str], str] = str) -> Plan:
    """Rebuild a ``Plan``; ``text`` restores secrets. Commands are not re-rendered."""
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise InputError(f"not a {FORMAT} v{VERSION} file", Position(path))
    try:
        return _plan_from_dict(data, path, text)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a valid saved plan: {exc!r}", Position(path)) from None


def _plan_from_dict(data: Mapping[str, Any], path: str, text: Callable[[str], str]) -> Plan:
    hosts = {name: Host.from_dict(name, h) for name, h in data["hosts"].items()}
    steps = []
    for s in data["steps"]:
        policy = {"on_failure": s["on_failure"], "max_failures": s["max_failures"]}
        batches = tuple(
            tuple(_command(s["name"], c, hosts, policy, text) for c in batch)
            for batch in s["batches"]
        )
        first = batches[0][0] if batches and batches[0] else None
        steps.append(
            PlannedStep(
                name=s["name"],
                position=Position(data["source"], s.get("line", 0)),
                batches=batches,
                spec=first.spec if first is not None else ExecSpec.from_dict(policy),
                hosts=s["hosts"],
                max_failures=s["max_failures"],
                confirm=s.get("confirm"),
                tags=tuple(s.get("tags", ())),
                run_once=s.get("run_once", False),
                local=s.get("local", False),
                serial=s.get("serial"),
            )
        )
    return Plan(
        name=data["runbook"],
        source=data["source"],
        digest=data["digest"],
        steps=tuple(steps),
        secret_names=tuple(data.get("secrets", ())),
        meta={"created": data.get("created"), "plan_file": path},
    )


def _command(
    step: str,
    c: Mapping[str, Any],
    hosts: Mapping[str, Host],
    policy: Mapping[str, Any],
    text: Callable[[str], str],
) -> Command:
    return Command(
        step=step,
        host=hosts[c["host"]],
        cmd=text(c["cmd"]),
        env={k: text(v) for k, v in c.get("env", {}).items()},
        spec=ExecSpec.from_dict(c, policy),
        until_vars=c.get("until_vars", {}),
        skip_reason=c.get("skipped"),
    )
