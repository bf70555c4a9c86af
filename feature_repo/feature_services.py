"""Feature services: one per feature-set version a model is trained and served with.

A new model that needs different features gets ``recommender_v2``; ``recommender_v1``
stays unchanged while any registered model still uses it.
"""

from feast import FeatureService
from feature_views import item_features, user_features

recommender_v1 = FeatureService(
    name="recommender_v1",
    features=[user_features, item_features],
    description="User and item features of the hybrid recommender, version 1.",
    tags={"model": "recomart_recommender"},
)
