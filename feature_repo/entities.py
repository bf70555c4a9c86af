"""Entities of the RecoMart feature store: a shop user and a catalogue item (text ids)."""

from feast import Entity
from feast.value_type import ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A shop user (events.user_id, users.csv).",
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A catalogue item (events.item_id, products.csv).",
)
