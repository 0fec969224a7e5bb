"""The benchmark suite: session_middleware against the session layers it replaces.

Run it with ``python -m benchmarks`` (see benchmarks/README.md). It is not part of the
test run: the figures depend on the machine, the counts are asserted in tests/.
"""
