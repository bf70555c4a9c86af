"""Experiment definitions and deterministic assignment: same bucket everywhere, shares held."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from recomart.experiments.assignment import assign, assign_many, bounds, bucket
from recomart.experiments.definitions import Experiment, Variant, parse_variants

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _experiment(spec: str = "hybrid:0.5,popularity:0.5", salt: str = "s1", **fields) -> Experiment:
    return Experiment(fields.pop("name", "ab"), salt, parse_variants(spec), fields.pop("control", "hybrid"),
                      "conversion", T0, **fields)  # fmt: skip


def test_bucket_is_stable_across_processes() -> None:
    """Python's hash() is salted per process; the bucket must not be."""
    users = [f"user-{n}" for n in range(50)]
    here = [bucket("salt-a", user) for user in users]
    code = f"from recomart.experiments.assignment import bucket; print([bucket('salt-a', u) for u in {users!r}])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={
        "PYTHONHASHSEED": "12345", "PATH": "/usr/bin",
    }).stdout  # fmt: skip
    assert eval(other) == here
    assert all(0 <= b < 10_000 for b in here)


def test_the_salt_reshuffles_users() -> None:
    users = [f"u{n}" for n in range(2000)]
    a = np.array([bucket("one", u) for u in users])
    b = np.array([bucket("two", u) for u in users])
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1


@pytest.mark.parametrize("spec", ["hybrid:0.5,popularity:0.5", "hybrid:0.2,popularity:0.3,x=no_rerank:0.5"])
def test_shares_are_held(spec: str) -> None:
    experiment = _experiment(spec)
    users = [f"user-{n}" for n in range(40_000)]
    names = assign_many(experiment, users)
    counts = np.array([names.count(v.name) for v in experiment.variants])
    expected = np.array([v.share for v in experiment.variants]) * len(users)
    assert stats.chisquare(counts, expected).pvalue > 0.001, counts
    assert [assign(experiment, u).name for u in users[:500]] == names[:500]


def test_bounds_follow_the_variant_order() -> None:
    experiment = _experiment("a=hybrid:0.5,b=popularity:0.3,c=no_rerank:0.2", control="a")
    assert bounds(experiment) == (5000, 8000, 10_000)
    salt_user = next(f"u{n}" for n in range(10_000) if 5000 <= bucket("s1", f"u{n}") < 8000)
    assert assign(experiment, salt_user).name == "b"


@pytest.mark.parametrize(
    ("spec", "control", "needle"),
    [
        ("hybrid:0.5,popularity:0.4", "hybrid", "sum to 0.9"),
        ("hybrid:1.0", "hybrid", "at least two variants"),
        ("hybrid:0.5,magic:0.5", "hybrid", "unknown policies ['magic']"),
        ("hybrid:0.5,popularity:0.5", "rerank", "control 'rerank' is not one of"),
    ],
)
def test_invalid_definitions_say_why(spec: str, control: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        _experiment(spec, control=control)


def test_parse_variants_names_and_policies() -> None:
    assert parse_variants("a=hybrid:0.25, popularity:0.75") == (
        Variant("a", "hybrid", 0.25), Variant("popularity", "popularity", 0.75),
    )  # fmt: skip
    with pytest.raises(ValueError, match="NAME\\[=POLICY\\]:SHARE"):
        parse_variants("hybrid=0.5")
