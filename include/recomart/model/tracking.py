"""What a training run logs to MLflow besides the model: metrics, curves, trials and the data set.

Metrics at several cut-offs K are not separate keys: the headline figures (every metric at the
round's ``k`` and at 10, and the metrics without a cut-off) keep their names
(``model_ndcg_at_10``), and each family is also logged as one metric per contender with the cut-off
as the step (``model_ndcg`` at steps 1, 2, 3, 5, 10, 15, 20), which MLflow draws as one curve.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from recomart.model.train import TrainResult

_AT_K = re.compile(r"^(?P<family>.+)_at_(?P<k>\d+)$")
#: leading rows of the training frame that the logged data set's schema is inferred from (MLflow otherwise
#: visits every value of each object column: 7 s of the train DAG's ``register`` task at 3M events)
SCHEMA_SAMPLE_ROWS = 1_000


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def headline_metrics(metrics: Mapping[str, Mapping[str, float]], k: int = 10) -> dict[str, float]:
    """``{"<contender>_<metric>": value}`` of the metrics without a cut-off and those at ``k`` or 10
    (NaN and infinite values dropped)."""
    out: dict[str, float] = {}
    for name, values in metrics.items():
        for metric, value in values.items():
            match = _AT_K.match(metric)
            if _finite(value) and (match is None or int(match["k"]) in (k, 10)):
                out[f"{name}_{metric}"] = float(value)
    return out


def metric_curves(metrics: Mapping[str, Mapping[str, float]]) -> dict[int, dict[str, float]]:
    """``{K: {"<contender>_<family>": value}}`` of every metric at a cut-off (``ndcg_at_5`` is family
    ``ndcg`` at step 5)."""
    out: dict[int, dict[str, float]] = {}
    for name, values in metrics.items():
        for metric, value in values.items():
            match = _AT_K.match(metric)
            if match is not None and _finite(value):
                out.setdefault(int(match["k"]), {})[f"{name}_{match['family']}"] = float(value)
    return out


def log_metrics(result: TrainResult) -> None:
    """The run's headline metrics, the at-K curves as steps, and the timings (``time_<step>``)."""
    import mlflow

    k = int(result.params.get("k", 10))
    mlflow.log_metrics(headline_metrics(result.metrics, k))
    for step, values in sorted(metric_curves(result.metrics).items()):
        mlflow.log_metrics(values, step=step)
    mlflow.log_metrics({f"time_{key}": value for key, value in result.timings.items()})
    mlflow.log_metrics(content_metrics(result.metadata.get("blend") or {}))


def content_metrics(blend: Mapping[str, Any]) -> dict[str, float]:
    """The content component's variants on the validation window (``blend``: the blend record, see
    :func:`recomart.model.blend_search.blend_record`): ``valid_content_<variant>_blend_ndcg`` (the best
    blend with it) and ``valid_content_<variant>_alone_ndcg`` (the component alone); none without a fit."""
    content = blend.get("content") or {}
    out: dict[str, float] = {}
    for kind, key in (("blend", "blend_validation_ndcg"), ("alone", "alone_validation_ndcg")):
        for variant, value in (content.get(key) or {}).items():
            if value is not None:
                out[f"valid_content_{variant}_{kind}_ndcg"] = float(value)
    return out


def stringify(values: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params and tags are strings; ``None`` values are left out."""
    return {key: str(value) for key, value in values.items() if value is not None}


def trial_run_record(trial: Mapping[str, Any], k: int) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    """``(params, metrics, tags)`` of a tuning trial's nested run (``trial``: ``index, params, metrics,
    seconds``): its parameters, its headline validation metrics (``valid_<metric>``) and
    ``trial_seconds``, and the tag ``trial_index``."""
    metrics = {**headline_metrics({"valid": trial["metrics"]}, k), "trial_seconds": float(trial["seconds"])}
    return stringify(trial["params"]), metrics, {"trial_index": str(trial["index"])}


def trial_run_name(index: int) -> str:
    return f"trial-{index:02d}"


def log_trials(result: TrainResult, experiment_id: str) -> None:
    """One nested MLflow run per tuning trial: its parameters and headline validation metrics."""
    import mlflow

    k = int(result.params.get("k", 10))
    for trial in result.trials:
        params, metrics, tags = trial_run_record(trial, k)
        with mlflow.start_run(experiment_id=experiment_id, run_name=trial_run_name(trial["index"]), nested=True):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)


def schema_sample(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` its schema is inferred from: the first :data:`SCHEMA_SAMPLE_ROWS` and, for each
    column with a missing value, its first missing one (which makes MLflow mark the column optional).
    The inferred schema is the whole frame's when each column holds values of one type."""
    missing = frame.isna().to_numpy()
    first_missing = missing.argmax(axis=0)[missing.any(axis=0)]
    return frame.iloc[np.union1d(np.arange(min(len(frame), SCHEMA_SAMPLE_ROWS)), first_missing)]


def log_dataset(result: TrainResult) -> None:
    """Record the training data's source, digest, size and schema with ``mlflow.data`` (no-op without the
    frame); the schema is inferred from :func:`schema_sample`."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature

    if result.data is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # source resolvers, integer columns in the schema
        dataset = from_pandas(
            result.data,
            source=result.dataset_source,
            name=result.dataset_source,
            digest=result.data_digest[:32],  # MLflow stores at most 36 characters; the tag has all 64
        )
        # ``schema`` is a cached property: given here, it is not inferred from every row
        dataset.schema = infer_signature(schema_sample(result.data)).inputs
        mlflow.log_input(dataset, context="training")
