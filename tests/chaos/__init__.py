"""Chaos scenarios: real clusters under faults, checked against a ledger (bench/chaos.py)."""
