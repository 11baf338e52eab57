"""In-process cost of planning: load, inventory, render, plan text; per rendered command.

    python benchmarks/plan_cost.py RUNBOOK.yml [--repeat 5]

Prints one JSON object. Each phase is timed ``--repeat`` times in this one process and the
best time is kept (later repeats find the compiled templates cached, as ``apply`` does not:
the first render of each step pays for compiling its template, reported apart).
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    t0 = time.perf_counter()
    from runbook.inventory.build import build_inventory
    from runbook.load.loader import load_runbook
    from runbook.plan.planner import make_plan
    from runbook.plan.text import plan_text

    imported = time.perf_counter() - t0

    best: dict[str, float] = {}
    first: dict[str, float] = {}
    commands = 0
    for i in range(args.repeat):
        t = time.perf_counter()
        rb = load_runbook(args.file)
        t_load = time.perf_counter()
        inv = build_inventory(rb.hosts, list(rb.inventory), rb.positions, rb.path)
        t_inv = time.perf_counter()
        plan = make_plan(rb, inv)
        t_plan = time.perf_counter()
        text = plan_text(plan)
        t_text = time.perf_counter()
        commands = len(plan.commands)
        phases = {
            "load": t_load - t,
            "inventory": t_inv - t_load,
            "render": t_plan - t_inv,
            "plan_text": t_text - t_plan,
        }
        for k, v in phases.items():
            best[k] = min(best.get(k, v), v)
            if i == 0:
                first[k] = v
        del plan, text
    print(
        json.dumps(
            {
                "commands": commands,
                "import_s": round(imported, 4),
                "first_s": {k: round(v, 4) for k, v in first.items()},
                "best_s": {k: round(v, 4) for k, v in best.items()},
                "render_us_per_command": round(best["render"] / commands * 1e6, 2),
                "render_first_us_per_command": round(first["render"] / commands * 1e6, 2),
                "total_us_per_command": round(sum(best.values()) / commands * 1e6, 2),
                "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
