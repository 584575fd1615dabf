"""Searching parameters: grids, sweeps (local or Dask), folds, walk-forward, overfitting."""
