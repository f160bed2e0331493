"""Benchmarks: latency, throughput, per-instance GFLOPs, memory; dense against pruned, side by side."""
