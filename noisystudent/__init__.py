"""Shared pieces of the Noisy Student project: record schemas, CLI, stable randomness."""

__version__ = "0.1.0"
