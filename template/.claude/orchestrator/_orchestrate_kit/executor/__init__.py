"""Executors: what starts, signals and observes a worker."""
