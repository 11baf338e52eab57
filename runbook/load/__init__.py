"""Runbook files into models: YAML with positions, the schema, steps and includes, secrets."""
