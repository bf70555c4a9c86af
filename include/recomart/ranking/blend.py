"""The blend: per-user min-max normalised component scores, summed with weights.

:class:`BlendWeights` are the weights the trainer fits on a validation window (default 0.7 CF /
0.3 content when there was too little data to fit them); :func:`blend_options` validates the
component settings chosen with them (item-item neighbours, popularity prior window, buy-again
half-life), as stored with a registered model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: the blended components, in blend order (``cf`` is the biased SVD)
COMPONENTS = ("cf", "item_item", "content", "buy_again", "popularity")
#: output column of each component's raw score
SCORE_COLUMNS = {
    "cf": "svd_score",
    "item_item": "item_item_score",
    "content": "content_score",
    "buy_again": "buy_again_score",
    "popularity": "popularity_score",
}
_ALIASES = {"cf": ("cf", "svd"), "popularity": ("popularity", "pop"), "item_item": ("item_item", "itemitem")}

#: the component settings a blend may carry (``options``) and their types
#: (``content_embedding``: the share of the item-embedding similarity in the content component, at most 1)
BLEND_OPTION_TYPES: dict[str, type] = {
    "top_n": int,
    "prior_days": int,
    "buy_again_half_life_days": float,
    "content_embedding": float,
}
#: options that may be ``None`` (the component's own default: all-time prior, the history's half-life,
#: TF-IDF alone)
NULLABLE_OPTIONS = ("prior_days", "buy_again_half_life_days", "content_embedding")
#: the default of each option when absent
OPTION_DEFAULTS: dict[str, Any] = {
    "top_n": 50,
    "prior_days": None,
    "buy_again_half_life_days": None,
    "content_embedding": None,
}
_OPTION_MAX = {"content_embedding": 1.0}


@dataclass(frozen=True)
class BlendWeights:
    """Blend weights of the normalised components; they are rescaled to sum to 1."""

    cf: float = 0.7
    content: float = 0.3
    popularity: float = 0.0
    item_item: float = 0.0
    buy_again: float = 0.0

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> BlendWeights:
        """Weights from model metadata ``{"weights": {"cf"|"svd", "content", "popularity", "item_item",
        "buy_again"}}``.  Missing, malformed or all-zero weights give the default 0.7 / 0.3."""
        raw = (meta or {}).get("weights")
        if not isinstance(raw, Mapping):
            return cls()
        values = {}
        try:
            for name in COMPONENTS:
                keys = _ALIASES.get(name, (name,))
                value = next((raw[k] for k in keys if k in raw), 0.0)
                values[name] = float(value or 0.0)
        except (TypeError, ValueError):
            return cls()
        arr = np.array(list(values.values()))
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or arr.sum() <= 0:
            return cls()
        return cls(**{k: float(v / arr.sum()) for k, v in values.items()})

    @classmethod
    def only(cls, component: str) -> BlendWeights:
        """Weights that rank by ``component`` alone."""
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}")
        return cls(**{name: float(name == component) for name in COMPONENTS})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def normalised(self) -> BlendWeights:
        total = sum(self.as_dict().values())
        return BlendWeights(**{k: v / total for k, v in self.as_dict().items()})


def blend_options(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The component settings ``raw`` (``top_n``, ``prior_days``, ``buy_again_half_life_days``,
    ``content_embedding``), typed;
    ``{}`` (the defaults) when absent, when any key is unknown, or when any value is not a positive
    number of its type (or ``None`` where allowed)."""
    if not isinstance(raw, Mapping) or not set(raw) <= set(BLEND_OPTION_TYPES):
        return {}
    options: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None and name in NULLABLE_OPTIONS:
            options[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            return {}
        typed = BLEND_OPTION_TYPES[name](value)
        if typed != value or typed > _OPTION_MAX.get(name, math.inf):  # e.g. 12.5 neighbours
            return {}
        options[name] = typed
    return options


def option_value(options: Mapping[str, Any], name: str) -> Any:
    """``options[name]``, or the option's default."""
    return options.get(name, OPTION_DEFAULTS[name])


def minmax_rows(scores: np.ndarray, ex_r: np.ndarray, ex_c: np.ndarray) -> np.ndarray:
    """Min-max scale each row to [0, 1] over its candidate cells (excluded cells ``(ex_r, ex_c)`` ignored).

    A row with a constant (or no) candidate score maps to 0.  ``scores`` is left untouched.
    """
    work = scores.astype(np.float32, copy=True)
    work[ex_r, ex_c] = np.inf
    lo = work.min(axis=1)
    work[ex_r, ex_c] = -np.inf
    hi = work.max(axis=1)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=ok)
    np.subtract(scores, np.where(ok, lo, 0.0).astype(np.float32)[:, None], out=work)
    work *= scale[:, None]
    return work


def blend(
    components: Mapping[str, np.ndarray], weights: BlendWeights, ex_r: np.ndarray, ex_c: np.ndarray
) -> np.ndarray:
    """Σ weight × per-user min-max normalised component (components absent from the mapping are
    skipped; when no weighted component is present the popularity prior decides)."""
    w = weights.as_dict()
    used = [name for name in COMPONENTS if name in components and w[name] > 0]
    if not used:  # nothing weighted is available (e.g. no SVD and only CF weighted)
        used, w = ["popularity"], {"popularity": 1.0}
    total: np.ndarray | None = None
    for name in used:
        part = minmax_rows(components[name], ex_r, ex_c)
        part *= np.float32(w[name])
        total = part if total is None else np.add(total, part, out=total)
    assert total is not None
    return total
