"""Comparing two models' representations (CKA by layer type) and predictions (agreement)."""

from vitscope.comparison.run import CompareConfig, run_compare

__all__ = ["CompareConfig", "run_compare"]
