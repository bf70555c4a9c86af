"""A measured value against its thresholds: one row of ``ops.monitoring_metrics``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One metric of one run.

    ``metric_key`` (e.g. ``drift.user.psi``), ``subject`` (what was measured: a feature, a generation
    id, a model version), ``status`` ``ok`` | ``warn`` | ``alert`` | ``info``, ``what`` (one readable
    line), ``scope``: the ``ops.alerts`` row it opens or resolves (its subject).
    """

    metric_key: str
    subject: str
    value: float | None
    status: str
    what: str
    warn_threshold: float | None = None
    alert_threshold: float | None = None
    scope: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def at_least(key: str, subject: str, value: float, warn: float | None, alert: float, what: str, **extra: Any) -> Check:
    """A check that alerts when ``value >= alert`` and warns when ``value >= warn``."""
    status = "alert" if value >= alert else "warn" if warn is not None and value >= warn else "ok"
    return Check(key, subject, _finite(value), status, what, warn, alert, **extra)


def below(key: str, subject: str, value: float, alert: float, what: str, **extra: Any) -> Check:
    """A check that alerts when ``value < alert`` (a nan value is not judged: ``info``)."""
    if value is None or math.isnan(value):
        return Check(key, subject, None, "info", what, None, alert, **extra)
    return Check(key, subject, float(value), "alert" if value < alert else "ok", what, None, alert, **extra)


def info(key: str, subject: str, value: float | None, what: str, **extra: Any) -> Check:
    """A measurement kept for its history, with no threshold."""
    return Check(key, subject, _finite(value), "info", what, **extra)
