"""The one training configuration: defaults and search spaces of the SVD and of the blend.

The train DAG (:func:`TrainingConfig.from_settings`), the accuracy benchmark and the tests all build
on :class:`TrainingConfig`; nothing else holds training defaults.  The SVD defaults and search space
are the ones the accuracy benchmark measured (``benchmarks/results/accuracy.json``): with sampled
negatives, more epochs or a weaker regularisation overfit planted-taste data (nDCG@10 0.29 at 20
epochs, lr 0.005, reg 0.1 against 0.14 at 40 epochs, lr 0.01, reg 0.05), so the defaults are the
conservative corner and the search tries the rest on the validation window.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from recomart.ranking.svd import NEGATIVE_SCHEMES, SVDSettings

if TYPE_CHECKING:
    from recomart.config import Settings

#: the first trial of the search and the parameters used when there is no validation window
DEFAULT_SVD_PARAMS: Mapping[str, Any] = MappingProxyType(
    {"n_factors": 32, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.1, "init_std_dev": 0.1}
)
#: the grid the bounded search draws seeded points from
SVD_SEARCH_SPACE: Mapping[str, tuple[Any, ...]] = MappingProxyType(
    {"n_factors": (16, 32, 64), "n_epochs": (10, 20, 40), "lr_all": (0.005, 0.01), "reg_all": (0.02, 0.05, 0.1)}
)
#: ``RECOMART_TRAIN_SPLIT``: time-based windows for shop data, or per-user 75/25 (the MovieLens protocol)
SPLIT_OPTIONS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "time": {"valid_fraction": 0.1, "test_fraction": 0.2},
        "time_days": {"valid_days": 14, "test_days": 30},
        "per_user_random": {"test_frac": 0.25, "valid_frac": 0.2},
    }
)
DECISION_METRIC = "ndcg_at_10"
#: what a round registers: ``validation`` (the learned ranker or the blend, whichever wins on the
#: validation window), ``blend`` / ``ranker`` (that one, the other still reported), ``off`` (no ranker)
RANKER_RULES = ("validation", "blend", "ranker", "off")


@dataclass(frozen=True)
class BlendSearch:
    """The blend's search space: weights by coordinate search over ``weight_grid`` (``rounds`` passes),
    and the component settings (``option_grid``, plus ``repeat_option_grid`` for feeds with repeat
    purchases), each option set scored on the validation window; with item vectors the best option set
    is tried again with each ``content_embedding_grid`` share of embeddings in the content component.

    Validation users are sampled (seeded) to ``max_users`` and to at most ``max_cells`` user × item
    cells per component; below ``min_users`` the default weights are kept.
    """

    weight_grid: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.35, 0.5, 0.75, 1.0)
    rounds: int = 5
    option_grid: Mapping[str, tuple[Any, ...]] = field(
        default_factory=lambda: MappingProxyType({"top_n": (10, 50), "prior_days": (None, 30)})
    )
    repeat_option_grid: Mapping[str, tuple[Any, ...]] = field(
        default_factory=lambda: MappingProxyType({"buy_again_half_life_days": (None, 365.0)})
    )
    #: shares of the item embeddings in the content component tried on top of the best option set when
    #: the catalogue has item vectors (TF-IDF alone is the option grid's own candidate)
    content_embedding_grid: tuple[float, ...] = (0.5, 1.0)
    min_users: int = 50
    max_users: int = 3000
    max_cells: int = 60_000_000

    def option_candidates(self, repeat_purchases: bool) -> list[dict[str, Any]]:
        """Every combination of :attr:`option_grid` (and :attr:`repeat_option_grid` for repeat feeds)."""
        grid = {**self.option_grid, **(self.repeat_option_grid if repeat_purchases else {})}
        return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


@dataclass(frozen=True)
class TrainingConfig:
    """How a training round splits, tunes, fits the blend and evaluates (everything explicit).

    ``mode``: ``implicit`` (positives + ``negative_ratio`` sampled negatives rated
    ``negative_rating``, the default for shop data) or ``explicit`` (fit the ratings).  ``split``:
    ``time`` (fractions of rows in time), ``time_days`` (``split_options`` ``valid_days`` /
    ``test_days``) or ``per_user_random`` (75/25 per user, validation carved out of train); for feeds
    with repeat purchases the time splits cut interaction events, not pairs
    (:func:`recomart.model.split.make_event_split`).  The SVD search starts at ``svd_params`` and
    tries up to ``max_trials`` seeded points of ``search_space`` within ``tuning_budget_s`` on
    ``tuning_metric`` (default: ``primary_metric`` in implicit mode, ``rmse`` in explicit mode); the
    blend search is ``blend``.  The gate promotes on ``primary_metric`` by the relative ``gate_margin``.
    With ``refit_full`` the served SVD is refitted on all the data with the chosen parameters.
    ``ranker``: one of :data:`RANKER_RULES` (:mod:`recomart.model.ranker_stage`).
    """

    mode: str = "implicit"
    negative_ratio: float = 1.0
    negative_sampling: str = "uniform"
    negative_rating: float = 0.0
    split: str = "time"
    split_options: Mapping[str, float] = field(default_factory=lambda: dict(SPLIT_OPTIONS["time"]))
    k: int = 10
    primary_metric: str = DECISION_METRIC
    gate_margin: float = 0.0
    tuning_metric: str | None = None
    svd_params: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_SVD_PARAMS))
    search_space: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: dict(SVD_SEARCH_SPACE))
    max_trials: int = 6
    tuning_budget_s: float = 300.0
    blend: BlendSearch = field(default_factory=BlendSearch)
    seed: int = 42
    refit_full: bool = True
    block_size: int = 4096
    ranker: str = "validation"

    def __post_init__(self) -> None:
        if self.mode not in ("implicit", "explicit"):
            raise ValueError(f"mode must be implicit or explicit, not {self.mode!r}")
        if self.negative_sampling not in NEGATIVE_SCHEMES:
            raise ValueError(f"negative_sampling must be one of {NEGATIVE_SCHEMES}")
        if self.split not in SPLIT_OPTIONS:
            raise ValueError(f"unknown split kind {self.split!r} ({', '.join(SPLIT_OPTIONS)})")
        if self.ranker not in RANKER_RULES:
            raise ValueError(f"ranker must be one of {RANKER_RULES}, not {self.ranker!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingConfig:
        """The configuration of the train DAG: mode, split, gate and seed from the deployment settings."""
        return cls(
            mode=settings.train_mode,
            split=settings.train_split,
            split_options=dict(SPLIT_OPTIONS[settings.train_split]),
            primary_metric=settings.gate_metric,
            gate_margin=settings.gate_margin,
            seed=settings.seed,
            ranker=settings.train_ranker,
        )

    @property
    def implicit(self) -> bool:
        return self.mode == "implicit"

    @property
    def effective_tuning_metric(self) -> str:
        return self.tuning_metric or (self.primary_metric if self.implicit else "rmse")

    def svd_settings(self, params: Mapping[str, Any] | None = None) -> SVDSettings:
        """How to fit one SVD with ``params`` (default: :attr:`svd_params`) under this configuration."""
        return SVDSettings(
            params={**self.svd_params, **(params or {})},
            seed=int(self.seed),
            implicit=self.implicit,
            negative_ratio=float(self.negative_ratio),
            negative_rating=float(self.negative_rating),
            negative_sampling=self.negative_sampling,
        )
