"""Benchmarks: run by name with `python -m tests.bench NAME [options]`; they print numbers
and never assert timings (the machine and whatever else runs on it decide those)."""
