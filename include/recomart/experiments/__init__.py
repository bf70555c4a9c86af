"""Experiments: definitions, deterministic assignment, exposures and their analysis."""
