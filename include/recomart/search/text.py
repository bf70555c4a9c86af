"""The text of a product that search embeds and indexes, and its hash (what decides a re-embedding)."""

from __future__ import annotations

import hashlib

import pandas as pd

TEXT_FIELDS = ("title", "description", "category", "brand")


def _clean(products: pd.DataFrame, column: str) -> pd.Series:
    if column not in products:
        return pd.Series("", index=products.index, dtype=object)
    return products[column].fillna("").astype(str).str.strip()


def product_texts(products: pd.DataFrame) -> pd.Series:
    """One text per product: ``"<title>. <description>. Category: <category>. Brand: <brand>."``.

    Missing or empty fields are left out with their label, so a UCI product (title only, category
    ``uncategorised``) reads ``"JUMBO BAG RED RETROSPOT. Category: uncategorised."``.  ``products``
    needs ``title`` and may have ``description``, ``category`` and ``brand``; the result has its index.
    """
    parts = [
        _clean(products, "title"),
        _clean(products, "description"),
        "Category: " + _clean(products, "category"),
        "Brand: " + _clean(products, "brand"),
    ]
    empty = [
        parts[0].eq(""),
        parts[1].eq(""),
        _clean(products, "category").eq(""),
        _clean(products, "brand").eq(""),
    ]
    text = pd.Series("", index=products.index, dtype=object)
    for part, is_empty in zip(parts, empty, strict=True):
        piece = part.str.rstrip(".") + "."
        text = text.where(is_empty, (text + " " + piece).str.lstrip())
    return text


def text_hashes(texts: pd.Series) -> pd.Series:
    """sha256 hex digest of each text's UTF-8 bytes (64 characters), with the index of ``texts``."""
    return texts.map(lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
