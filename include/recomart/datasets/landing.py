"""The data set's landing files: write (generated) or link (UCI) them, and list what landed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from recomart.config import Settings


def landing_days(s: Settings) -> list[date]:
    """The days that have a file of the data set's first (daily) feed in the landing folder."""
    from recomart.ingest.feeds import feeds_for_dataset

    daily = [f for f in feeds_for_dataset(s.dataset) if f.mode == "daily_partition"][0]
    folder = daily.path_for(s.landing_dir, date(2000, 1, 1)).parent
    return sorted(date.fromisoformat(p.stem) for p in folder.glob("*.csv")) if folder.is_dir() else []


def catalog_file(s: Settings) -> Path:
    """The catalogue file the catalog API serves for the configured data set."""
    return s.landing_dir / s.dataset / "products.csv"


def prepare_dataset(s: Settings) -> str:
    """Write (generated) or link (UCI) the data set's landing files; return a one-line summary."""
    if s.dataset == "generated":
        from recomart.datasets.generator import generate

        summary = generate(
            s.landing_dir / "generated",
            users=s.generator_users,
            items=s.generator_items,
            days=s.generator_days,
            seed=s.seed,
        )
        return (
            f"{summary.users:,} users, {summary.items:,} items, {summary.events:,} events in "
            f"{summary.event_files} daily files ({summary.start_date} .. {summary.end_date})"
        )
    if s.dataset == "uci":
        from recomart.datasets.uci import prepare_uci_landing

        return prepare_uci_landing(s.landing_dir, s.uci_dir, dbt_project_file=s.dbt_project_dir / "dbt_project.yml")
    raise ValueError(f"unknown data set {s.dataset!r}")
