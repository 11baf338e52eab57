"""runbook: declarative runbooks planned into per-host commands and run through a worker pool."""

__version__ = "0.1.0"
