"""Executing a plan: the runner, the worker pool, one command through its attempts, output."""
