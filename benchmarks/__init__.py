"""Throughput benchmarks for ltxkit, measured against the real Litestream binary in the same run.

Run with `python -m benchmarks.run` (or `make bench`). Nothing here is a test: it reports numbers and
goals, and exits 0 unless something crashes.
"""
