"""Evaluation: classifiers (own heads, linear probes), probes, k-NN, fine-tuning."""
