"""The generated shop: deterministic, well-formed, and with planted structure that beats popularity."""

from __future__ import annotations

import csv
import filecmp
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recomart.datasets.generator import EVENT_COLUMNS, PRODUCT_COLUMNS, USER_COLUMNS, generate, main

END = date(2026, 1, 31)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("shop") / "generated"
    summary = generate(out, users=600, items=200, days=30, end_date=END, seed=7)
    return out, summary


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _events(out: Path) -> pd.DataFrame:
    return pd.concat([_read(p) for p in sorted((out / "events").glob("*.csv"))], ignore_index=True)


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", users=150, items=60, days=5, end_date=END, seed=3)
    b = generate(tmp_path / "b", users=150, items=60, days=5, end_date=END, seed=3)
    c = generate(tmp_path / "c", users=150, items=60, days=5, end_date=END, seed=4)
    names = ["products.csv", "users.csv", *(f"events/{END - timedelta(days=k)}.csv" for k in range(5))]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert (sorted(match), mismatch, errors) == (sorted(names), [], [])
    assert a.events == b.events > 0
    assert not filecmp.cmp(
        tmp_path / "a" / "events" / f"{END}.csv", tmp_path / "c" / "events" / f"{END}.csv", shallow=False
    )
    assert c.events != a.events or c.purchases != a.purchases


def test_files_columns_and_counts(shop: tuple[Path, object]) -> None:
    out, summary = shop
    files = sorted((out / "events").glob("*.csv"))
    assert [p.name for p in files] == [f"{END - timedelta(days=k)}.csv" for k in range(29, -1, -1)]
    assert (summary.start_date, summary.end_date, summary.event_files) == (END - timedelta(days=29), END, 30)
    with open(out / "products.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == PRODUCT_COLUMNS and len(rows) - 1 == summary.items == 200
    with open(out / "users.csv", newline="") as f:
        assert next(csv.reader(f)) == USER_COLUMNS
    users, products, events = _read(out / "users.csv"), _read(out / "products.csv"), _events(out)
    assert len(users) == summary.users == 600 and users.user_id.is_unique
    assert products.item_id.is_unique and 8 <= products.category.nunique() <= 12
    assert list(events.columns) == EVENT_COLUMNS
    assert len(events) == summary.events == summary.views + summary.carts + summary.purchases
    assert events.event_id.is_unique
    assert set(events.user_id) <= set(users.user_id) and set(events.item_id) <= set(products.item_id)
    counts = events.event_type.value_counts()
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert (counts["view"], counts["add_to_cart"], counts["purchase"]) == (
        summary.views,
        summary.carts,
        summary.purchases,
    )


def test_values_are_well_formed(shop: tuple[Path, object]) -> None:
    out, _ = shop
    events, products, users = _events(out), _read(out / "products.csv"), _read(out / "users.csv")
    # text ids, not numbers in disguise: prefixes, letter suffixes
    assert products.item_id.str.fullmatch(r"P\d{5,}|\d{5,}[A-Z]?").all()
    assert products.item_id.str.contains(r"[A-Z]").any() and products.item_id.str.fullmatch(r"\d+").any()
    assert users.user_id.str.fullmatch(r"[CU]\d{5,}").all()
    # every event falls inside the day of its file, in time order
    for path in (out / "events").glob("*.csv"):
        day = _read(path)
        times = pd.to_datetime(day.event_time, format="%Y-%m-%d %H:%M:%S")
        assert (times.dt.date.astype(str) == path.stem).all()
        assert times.is_monotonic_increasing
    assert events.event_type.isin(["view", "add_to_cart", "purchase"]).all()
    assert (events.quantity.astype(int) >= 1).all()
    assert (events.unit_price.astype(float) > 0).all() and (products.price.astype(float) > 0).all()
    pd.to_datetime(products.updated_at, format="%Y-%m-%d %H:%M:%S")
    signup = pd.to_datetime(users.signup_date, format="%Y-%m-%d")
    first_seen = pd.to_datetime(events.event_time).groupby(events.user_id).min()
    assert (first_seen.dt.normalize() >= signup.set_axis(users.user_id)[first_seen.index]).all()
    # categories carry their own prices and words
    median = products.assign(p=products.price.astype(float)).groupby("category").p.median()
    assert median["electronics"] > 2 * median["stationery"]
    assert (products.description.str.len() > 40).all()


def test_repeat_purchases_are_rare(shop: tuple[Path, object]) -> None:
    out, _ = shop
    bought = _events(out).query("event_type == 'purchase'")
    repeats = 1 - len(bought[["user_id", "item_id"]].drop_duplicates()) / len(bought)
    assert repeats < 0.05


def _hit_rate_at_10(out: Path, holdout_days: int = 7) -> tuple[float, float, int]:
    """Hit-rate@10 of new purchases in the last days: global popularity vs category affinity x popularity."""
    products = _read(out / "products.csv")
    events = _events(out)
    item = pd.Index(products.item_id)
    user = pd.Index(events.user_id.unique())
    categories, cat_of = np.unique(products.category.to_numpy(), return_inverse=True)
    u, i = user.get_indexer(events.user_id), item.get_indexer(events.item_id)
    test = (pd.to_datetime(events.event_time) >= pd.Timestamp(END - timedelta(days=holdout_days - 1))).to_numpy()
    buy = (events.event_type == "purchase").to_numpy()
    shape = (len(user), len(item))
    train_all, train_buy, test_buy = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    np.add.at(train_all, (u[~test], i[~test]), 1.0)
    np.add.at(train_buy, (u[~test & buy], i[~test & buy]), 1.0)
    np.add.at(test_buy, (u[test & buy], i[test & buy]), 1.0)
    test_buy *= train_buy == 0  # already bought items are not recommendable
    eligible = (test_buy.sum(axis=1) > 0) & (train_all.sum(axis=1) > 0)

    popularity = train_all.sum(axis=0)
    onehot = np.eye(len(categories))[cat_of]
    affinity = train_all @ onehot + 0.1
    affinity /= affinity.sum(axis=1, keepdims=True)
    personal = (affinity @ onehot.T) * (popularity + 1.0)

    def hit_rate(score: np.ndarray) -> float:
        score = np.where(train_buy > 0, -np.inf, score)
        top = np.argsort(-score, axis=1, kind="stable")[:, :10]
        return float((np.take_along_axis(test_buy, top, axis=1).sum(axis=1) > 0)[eligible].mean())

    return hit_rate(np.broadcast_to(popularity, shape)), hit_rate(personal), int(eligible.sum())


def test_user_history_beats_popularity(shop: tuple[Path, object]) -> None:
    out, _ = shop
    popular, personal, users = _hit_rate_at_10(out)
    assert users >= 100
    assert personal > 1.2 * popular, (popular, personal)


def test_flat_tastes_do_not_beat_popularity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: with tastes drawn from the global mix only, history carries no signal."""
    import recomart.datasets.generator as generator

    monkeypatch.setattr(generator, "_NOISE", 1.0)
    generate(tmp_path, users=600, items=200, days=30, end_date=END, seed=7)
    popular, personal, _ = _hit_rate_at_10(tmp_path)
    assert personal < 1.2 * popular, (popular, personal)


def test_cli_and_stale_day_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "events" / "2000-01-01.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("old\n")
    assert (
        main(
            [
                "--out",
                str(tmp_path),
                "--users",
                "40",
                "--items",
                "30",
                "--days",
                "3",
                "--seed",
                "1",
                "--end-date",
                "2026-01-31",
            ]
        )
        == 0
    )
    assert '"end_date": "2026-01-31"' in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        "2026-01-29.csv",
        "2026-01-30.csv",
        "2026-01-31.csv",
    ]


def test_end_date_defaults_to_yesterday_utc_so_no_event_lies_in_the_future(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    before = datetime.now(UTC)
    summary = generate(tmp_path, users=20, items=15, days=2)
    assert summary.end_date == before.date() - timedelta(days=1)
    last_day = (tmp_path / "events" / f"{summary.end_date}.csv").read_text().splitlines()
    latest = max(datetime.fromisoformat(line.split(",")[1]).replace(tzinfo=UTC) for line in last_day[1:])
    assert latest < before
