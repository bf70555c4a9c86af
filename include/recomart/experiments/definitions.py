"""What an experiment is: a name, a salt, variants with traffic shares, a window and a primary metric.

A variant applies one ranking *policy* of the API (:data:`POLICIES`). The pairs the issue compares:
``champion`` / ``challenger`` (the nightly list re-ranked with ``@champion``'s or ``@challenger``'s
item-to-item neighbours: the generation itself is ranked by ``@champion`` only), ``hybrid`` /
``popularity`` (the user's hybrid list, or the generation's cold-start list of their segment) and
``rerank`` / ``no_rerank`` (with or without the session re-ranking of the speed layer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

BUCKETS = 10_000
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
METRICS = ("conversion", "revenue")


@dataclass(frozen=True)
class Policy:
    """How the API builds a variant's list: ``source`` ``personal`` (the user's nightly list, cold start
    for users not in it) or ``popular`` (the segment's cold-start list); ``rerank_with`` the alias whose
    neighbours re-rank it with the session (None: no session re-ranking)."""

    source: str
    rerank_with: str | None
    description: str


POLICIES: dict[str, Policy] = {
    "hybrid": Policy("personal", "champion", "the user's hybrid list, re-ranked with the session (default)"),
    "champion": Policy("personal", "champion", "the nightly list re-ranked with @champion's neighbours"),
    "challenger": Policy("personal", "challenger", "the nightly list re-ranked with @challenger's neighbours"),
    "rerank": Policy("personal", "champion", "the hybrid list with the session re-ranking"),
    "no_rerank": Policy("personal", None, "the hybrid list without the session re-ranking"),
    "popularity": Policy("popular", None, "the generation's cold-start list of the user's segment"),
}
DEFAULT_POLICY = POLICIES["hybrid"]


@dataclass(frozen=True)
class Variant:
    name: str
    policy: str
    share: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "policy": self.policy, "share": self.share}


@dataclass(frozen=True)
class Experiment:
    """One row of ``ops.experiments`` (``variants`` in bucket order)."""

    name: str
    salt: str
    variants: tuple[Variant, ...]
    control: str
    primary_metric: str
    starts_at: datetime
    ends_at: datetime | None = None

    def __post_init__(self) -> None:
        problems = definition_problems(self)
        if problems:
            raise ValueError(f"experiment {self.name!r}: {'; '.join(problems)}")

    @property
    def shares(self) -> dict[str, float]:
        return {variant.name: variant.share for variant in self.variants}

    def running_at(self, when: datetime) -> bool:
        return self.starts_at <= when and (self.ends_at is None or when < self.ends_at)

    def variants_json(self) -> str:
        return json.dumps([variant.as_dict() for variant in self.variants])


def definition_problems(e: Experiment) -> list[str]:
    """What is wrong with ``e`` (empty when it is valid)."""
    problems = []
    if not NAME_PATTERN.match(e.name):
        problems.append("the name must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
    if not e.salt:
        problems.append("the salt is empty")
    names = [variant.name for variant in e.variants]
    if len(names) < 2 or len(set(names)) != len(names):
        problems.append(f"needs at least two variants with distinct names (got {names})")
    unknown = sorted({variant.policy for variant in e.variants} - set(POLICIES))
    if unknown:
        problems.append(f"unknown policies {unknown} (known: {', '.join(POLICIES)})")
    if any(not 0 < variant.share <= 1 for variant in e.variants):
        problems.append("every share must be in (0, 1]")
    if abs(sum(variant.share for variant in e.variants) - 1) > 1e-6:
        problems.append(f"the shares sum to {sum(v.share for v in e.variants):g}, not 1")
    if e.control not in names:
        problems.append(f"the control {e.control!r} is not one of the variants {names}")
    if e.primary_metric not in METRICS:
        problems.append(f"the primary metric {e.primary_metric!r} is not one of {list(METRICS)}")
    if e.ends_at is not None and e.ends_at <= e.starts_at:
        problems.append("it ends before it starts")
    return problems


def parse_variants(text: str) -> tuple[Variant, ...]:
    """``"hybrid:0.5,popularity:0.5"`` (or ``"a=hybrid:0.5,b=popularity:0.5"``, name=policy) as variants.

    Raises ``ValueError`` naming the part that does not parse.
    """
    variants = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        label, sep, share = part.rpartition(":")
        name, _, policy = label.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = float("nan")
        if not sep or not name or value != value:
            raise ValueError(f"variant {part!r} is not NAME[=POLICY]:SHARE, e.g. hybrid:0.5")
        variants.append(Variant(name, policy or name, value))
    return tuple(variants)


def variants_from_json(rows: list[dict[str, Any]]) -> tuple[Variant, ...]:
    return tuple(Variant(str(row["name"]), str(row["policy"]), float(row["share"])) for row in rows)
