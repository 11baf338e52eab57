"""The runbook, its plan, commands, results and events as frozen data: no I/O, nothing of
the engine."""
