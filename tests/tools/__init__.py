"""Tests of the benchmark helpers (benchmarks/) and the sweep scripts (scripts/)."""
