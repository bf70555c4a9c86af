"""Data quality: Great Expectations suites for the raw tables and the marts.

Import inside Airflow tasks, not at DAG top level (importing GX takes seconds).
"""

import logging

# While importing, GX logs one INFO line per function of its public-API decorator ("Skipping
# registering function … because it does not have a class"): about 200 lines, half of a validation
# task's log.  Keep that logger's warnings and errors; this runs before any GX import below.
logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)

from recomart.quality.validate import (  # noqa: E402
    DataQualityError,
    ExpectationOutcome,
    ValidationSummary,
    validate_marts,
    validate_raw,
)

__all__ = ["DataQualityError", "ExpectationOutcome", "ValidationSummary", "validate_marts", "validate_raw"]
