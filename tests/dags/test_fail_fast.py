"""Bad input fails a task at once (no retries); other errors keep the DAG's retries; a run that changed
nothing ends skipped."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from recomart_dag_utils.defaults import fail_fast_on_bad_data, skip_when_unchanged

from recomart.ingest.landing import LandingFileRefused
from recomart.ingest.load import RejectedShareExceeded
from recomart.ingest.parse import FeedSchemaError
from recomart.ingest.window import InvalidDayError
from recomart.tasks.ingest_events import days_in_window


@pytest.mark.parametrize("error", [FeedSchemaError, LandingFileRefused, RejectedShareExceeded, InvalidDayError])
def test_bad_input_fails_without_retries(error: type[Exception]) -> None:
    expected = pytest.raises(AirflowFailException, match=f"{error.__name__}: bad in /landing/x.csv")
    with expected, fail_fast_on_bad_data():
        raise error("bad in /landing/x.csv")


def test_a_bad_day_parameter_fails_without_retries() -> None:
    with pytest.raises(AirflowFailException, match="start_day '2011-12-05/../../etc'"), fail_fast_on_bad_data():
        days_in_window("2011-12-05/../../etc", None, None, None)


def test_other_errors_keep_their_retries() -> None:
    with pytest.raises(ConnectionError), fail_fast_on_bad_data():
        raise ConnectionError("server closed the connection unexpectedly")


def test_a_run_that_changed_nothing_ends_skipped_without_an_asset_event() -> None:
    """A task that raises AirflowSkipException ends skipped, and a skipped task emits no outlet event."""
    skip_when_unchanged({"no_change": None, "loaded": 3})  # something changed: the task goes on
    with pytest.raises(AirflowSkipException, match="nothing new loaded"):
        skip_when_unchanged({"no_change": "nothing new loaded for 2026-11-01 .. 2026-11-01"})
