"""Plots and reports: pure functions of saved results files."""
