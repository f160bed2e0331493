"""Compression training: task loss + alignment loss + temperature control toward a GFLOPs target."""
