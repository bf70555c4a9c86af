"""Data quality: Great Expectations suites for the raw tables and the marts.

Import inside Airflow tasks, not at DAG top level (importing GX takes seconds).
"""

from recomart.quality.validate import (
    DataQualityError,
    ExpectationOutcome,
    ValidationSummary,
    validate_marts,
    validate_raw,
)

__all__ = ["DataQualityError", "ExpectationOutcome", "ValidationSummary", "validate_marts", "validate_raw"]
