"""Metrics: pure functions (tensor in → tensor out) and streaming accumulators over them."""
