"""Benchmarks measured on a GPU (not run in CI): see benchmarks/README.md."""
