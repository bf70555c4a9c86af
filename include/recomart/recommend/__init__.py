"""Nightly recommendations: hybrid SVD + content scores, popularity cold start, atomic write-back to reco.

Entry point: :func:`recomart.recommend.run.generate_recommendations`.
"""

from recomart.recommend.run import GenerationResult, generate_recommendations
from recomart.recommend.writer import swap_in_table

__all__ = ["GenerationResult", "generate_recommendations", "swap_in_table"]
