"""Benchmarks of the service against the machine's limit and the naive design.

Run them with ``python scripts/benchmark.py`` (see BENCHMARKS.md).
"""
