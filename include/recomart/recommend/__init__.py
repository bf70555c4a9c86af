"""Nightly recommendations: rank every user through the registered hybrid, atomic write-back to ``reco``.

The hybrid (biased SVD, item-to-item, content, buy-again and a popularity prior, with segment
popularity for cold start) is the MLflow champion's own :class:`recomart.ranking.hybrid.HybridRecommender`;
this package reads the marts, ranks, and swaps ``reco.user_recommendations``, ``reco.similar_items``
and ``reco.popular_items`` in together (:mod:`recomart.recommend.writer`, :mod:`recomart.recommend.tables`).

Entry point: :func:`recomart.recommend.run.generate_recommendations`.
"""
