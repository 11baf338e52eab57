"""Runbook x inventory into a plan: the planner, selection, saved plans and the plan as text."""
