"""Shared pieces of the RecoMart DAGs: assets, default arguments and connection look-ups."""
