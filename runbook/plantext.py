"""The plan as text: what a reviewer reads. Deterministic: same input, same bytes."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from runbook.plan import Plan


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def plan_text(plan: Plan, mask: Callable[[str], str] = str) -> str:
    """The reviewable plan. Deterministic: same input, same bytes."""
    hosts = {c.host.name for c in plan.commands}
    lines = [
        f"Plan: {plan.name}",
        f"source: {plan.source} ({plan.digest[:19]})" if plan.digest else f"source: {plan.source}",
        f"{counted(len(plan.steps), 'step')}, {counted(len(hosts), 'host')}, "
        f"{counted(len(plan.commands), 'command')}",
    ]
    for i, step in enumerate(plan.steps, 1):
        cmds = step.commands
        lines.append("")
        head = f"[{i}] {step.name}"
        policy = f"on_failure: {step.on_failure}"
        if step.max_failures:
            policy += f", max_failures: {step.max_failures}"
        where = "controller (local)" if step.local else _hosts_label(step.hosts)
        lines.append(f"{head}    hosts: {where} ({len(cmds)})    {policy}")
        spec = step.spec
        extras = [f"timeout: {spec.timeout:g}s"] if cmds else []
        if step.serial is not None:
            extras.append(f"serial: {step.serial} → {len(step.batches)} batches")
        if spec.retries:
            extras.append(f"retries: {spec.retries} every {spec.delay:g}s")
        if spec.until:
            extras.append(f"until: {spec.until}")
        if step.run_once:
            extras.append("run_once")
        if spec.become:
            extras.append(f"become: {spec.user}")
        if step.tags:
            extras.append("tags: " + ", ".join(step.tags))
        if extras:
            lines.append("    " + "    ".join(extras))
        if step.confirm:
            lines.append(f"    confirm: {mask(step.confirm)}")
        # Env shared by every host is shown once; each host line shows only what differs.
        common = dict(set.intersection(*(set(c.env.items()) for c in cmds))) if cmds else {}
        if common:
            lines.append(
                "    env: " + _env({k: v for k, v in cmds[0].env.items() if k in common}, mask)
            )
        if not cmds:
            lines.append("    (no hosts)")
        width = max((len(c.host.name) for c in cmds), default=0)
        for b, batch in enumerate(step.batches, 1):
            indent = "    "
            if len(step.batches) > 1:
                lines.append(f"    batch {b}/{len(step.batches)}")
                indent = "      "
            for c in batch:
                name = c.host.name.ljust(width)
                if c.skip_reason:
                    lines.append(f"{indent}{name}  (skipped: {c.skip_reason})")
                    continue
                cmd_lines = mask(c.cmd).rstrip("\n").split("\n")
                lines.append(f"{indent}{name}  $ {cmd_lines[0]}")
                lines += [f"{indent}{' ' * width}    {ln}" for ln in cmd_lines[1:]]
                own = {k: v for k, v in c.env.items() if k not in common}
                if own:
                    lines.append(f"{indent}{' ' * width}    env: {_env(own, mask)}")
    return "\n".join(lines) + "\n"


def _hosts_label(hosts: str | list[str]) -> str:
    return ", ".join(hosts) if isinstance(hosts, list) else str(hosts)


def _env(env: dict[str, str], mask: Callable[[str], str]) -> str:
    return " ".join(f"{k}={mask(shlex.quote(v))}" for k, v in env.items())
