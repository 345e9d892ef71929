"""The benchmarks: a package, run as modules from the repository root.

.venv/bin/python -m bench.respond
"""
