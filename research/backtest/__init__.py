"""Simulating and scoring parameters: execution, the numba kernel, metrics, quality, bias."""
