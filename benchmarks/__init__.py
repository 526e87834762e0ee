"""The benchmark `make bench` runs: see benchmarks/run.py."""
