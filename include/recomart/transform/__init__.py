"""The transform stage: the dbt project under ``dbt_project/``, run as a subprocess."""

from recomart.transform.dbt import DbtBuildError, DbtNodeResult, DbtResult, dbt_build, run_dbt

__all__ = ["DbtBuildError", "DbtNodeResult", "DbtResult", "dbt_build", "run_dbt"]
