"""Robustness and bias: accuracy under frequency-band noise, shape bias on cue-conflict images."""
