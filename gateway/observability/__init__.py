"""Metrics and logging of one gateway app (no process-wide registries)."""
