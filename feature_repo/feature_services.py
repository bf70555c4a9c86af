"""Feature services: one per feature-set version a model is trained and served with.

A new model that needs different features gets ``recommender_v2``; ``recommender_v1``
stays unchanged while any registered model still uses it. ``serving_v1`` is what the API reads
online (``recomart.features.session.SERVING_FEATURE_SERVICE``); training never reads it.
"""

from feast import FeatureService
from feature_views import item_features, user_features
from session_features import user_session_features

recommender_v1 = FeatureService(
    name="recommender_v1",
    features=[user_features, item_features],
    description="User and item features of the hybrid recommender, version 1.",
    tags={"model": "recomart_recommender"},
)

serving_v1 = FeatureService(
    name="serving_v1",
    features=[user_features, user_session_features],
    description="What the API reads online per user: the nightly user features and the fresh session features.",
    tags={"model": "recomart_recommender"},
)
