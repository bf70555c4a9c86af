"""A validation's log is readable: Great Expectations' import-time "Skipping registering function …"
lines (about 200 per process) are silenced, its warnings are not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# the quality tests' `warehouse` fixture (their valid raw tables and marts, in this module's databases),
# registered here as `quality_warehouse`
from test_quality import warehouse as quality_warehouse  # noqa: F401

pytestmark = pytest.mark.integration

# A fresh process (GX logs those lines once, on import) logging at INFO like an Airflow task.
VALIDATION_RUN = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
from recomart.quality import validate_raw
validate_raw(sys.argv[1], "generated", tables=["events", "products"])
logging.getLogger("great_expectations._docs_decorators").warning("a GX warning still shows")
"""


def test_validation_log_has_no_gx_registration_noise(request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue("quality_warehouse")
    run = subprocess.run(
        [sys.executable, "-c", VALIDATION_RUN, dsn], capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    noise = [line for line in lines if "Skipping registering function" in line]
    assert noise == [], f"{len(noise)} of {len(lines)} log lines are GX's registration noise, e.g. {noise[:2]}"
    assert any("data quality raw (generated)" in line for line in lines), run.stdout[-3000:]
    assert "WARNING great_expectations._docs_decorators: a GX warning still shows" in lines
