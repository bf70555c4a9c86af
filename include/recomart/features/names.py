"""Names shared with ``feature_repo/`` (entities, feature views, the feature service)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EntityName = Literal["user", "item"]

FEATURE_SERVICE = "recommender_v1"
"""The feature-set version that training and serving use (one FeatureService per version)."""


@dataclass(frozen=True)
class EntitySpec:
    """How an entity is keyed and which feature view holds its features."""

    name: str
    join_key: str
    feature_view: str


ENTITIES: dict[str, EntitySpec] = {
    "user": EntitySpec(name="user", join_key="user_id", feature_view="user_features"),
    "item": EntitySpec(name="item", join_key="item_id", feature_view="item_features"),
}


def entity_spec(entity: str) -> EntitySpec:
    """The :class:`EntitySpec` of ``entity`` (``"user"`` or ``"item"``)."""
    try:
        return ENTITIES[entity]
    except KeyError:
        raise ValueError(f"unknown entity {entity!r}; expected one of {sorted(ENTITIES)}") from None
