"""Stands in for LeetGPU's ``challenges/core`` package (see :mod:`runner.compat`)."""
