"""The compat suite: the frameworks' own session tests, run against our integrations.

See harness.py (what runs, and how) and expected.toml (the differences we accept).
"""
