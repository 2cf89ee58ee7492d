"""Benchmarks (scripts, not tests); see bench/BENCHMARKS.md."""
