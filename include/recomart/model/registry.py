"""Log a trained recommender to MLflow, register it, and point the ``champion`` / ``challenger`` aliases.

Stages are deprecated (mlflow#10336): promotion is an alias.  The gate (:mod:`recomart.model.gate`)
promotes a version to ``@champion`` only if it beats popularity and the current champion (re-scored on
the same split) on the primary metric; otherwise it gets ``@challenger`` and the champion is left alone.
MLflow keeps no audit trail of alias moves (mlflow#2169): keep a promotion log of your own from
the returned :class:`RegisteredModel`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import scipy.sparse as sp

from recomart.model.factors import FactorModel
from recomart.model.gate import GateDecision, decide
from recomart.model.train import TrainResult

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "recomart"
CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT_NAME = "recommender"
EVAL_FACTORS_ARTIFACT = "eval_factors"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_RUNTIME_PACKAGES = ("numpy", "pandas", "scipy", "numba", "mlflow")


@dataclass(frozen=True)
class RegisteredModel:
    """The registered version and whether it was promoted to ``@champion`` (and why)."""

    version: str
    run_id: str
    promoted: bool
    reason: str
    model_name: str = ""
    alias: str = ""
    gate: dict[str, Any] | None = None


def git_commit(cwd: Path = _PACKAGE_DIR) -> str | None:
    """The commit the code was loaded from, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, artifact_dir: Path, name: str = EXPERIMENT_NAME) -> str:
    """Id of experiment ``name``, created with ``artifact_location=file://<artifact_dir>`` if missing."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    location = Path(artifact_dir).resolve().as_uri()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        Path(artifact_dir).mkdir(parents=True, exist_ok=True)
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created concurrently by another task
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if exp.artifact_location.rstrip("/") != location.rstrip("/"):
        log.warning("experiment %s keeps its artifact location %s (not %s)", name, exp.artifact_location, location)
    return exp.experiment_id


def _pip_requirements() -> list[str]:
    reqs = []
    for name in _RUNTIME_PACKAGES:
        try:
            reqs.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def gate_decision(result: TrainResult) -> GateDecision:
    """The promotion gate applied to ``result``'s test metrics (candidate, popularity, champion if any).

    When the champion's training data reached into this split's test part, the reason says so: the
    champion's figure is then optimistic (see ``train_tune_evaluate``).
    """
    gate = decide(
        result.metrics,
        metric=result.primary_metric,
        margin=result.gate_margin,
        champion_version=result.champion_version,
    )
    if result.split.get("champion_saw_test_data"):
        note = " (the champion was trained on data reaching into this test window, so its figure is optimistic)"
        gate = dataclasses.replace(gate, reason=gate.reason + note)
    return gate


def _log_trials(result: TrainResult, experiment_id: str) -> None:
    """One nested MLflow run per tuning trial: its parameters and validation metrics."""
    import math

    import mlflow

    for trial in result.trials:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"trial-{trial['index']:02d}", nested=True):
            mlflow.log_params(_stringify(trial["params"]))
            mlflow.log_metrics(
                {
                    f"valid_{key}": float(value)
                    for key, value in trial["metrics"].items()
                    if isinstance(value, int | float) and math.isfinite(value)
                }
            )
            mlflow.log_metric("trial_seconds", float(trial["seconds"]))
            mlflow.set_tag("trial_index", str(trial["index"]))


def _log_dataset(result: TrainResult) -> None:
    """Record the training data's source and digest with ``mlflow.data`` (no-op without the frame)."""
    import warnings

    import mlflow
    import mlflow.data

    if result.data is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the source string matches several resolvers
        dataset = mlflow.data.from_pandas(
            result.data,
            source=result.dataset_source,
            name=result.dataset_source,
            digest=result.data_digest[:32],  # MLflow stores at most 36 characters; the tag has all 64
        )
    mlflow.log_input(dataset, context="training")


def _trained_through(result: TrainResult) -> str | None:
    """Latest timestamp of the data the served model was fitted on (None when unknown)."""
    if result.data is None or "event_timestamp" not in result.data:
        return None
    return pd.Timestamp(result.data["event_timestamp"].max()).isoformat()


def blend_params(metadata: dict[str, Any]) -> dict[str, Any]:
    """``weight_<component>`` of the blend weights and ``blend_<option>`` of the input options stored
    with the model (empty without them)."""
    weights = metadata.get("weights") or {}
    options = (metadata.get("blend") or {}).get("options") or {}
    return {
        **{f"weight_{name}": float(value) for name, value in weights.items()},
        **{f"blend_{name}": value for name, value in options.items()},
    }


def _stringify(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def log_and_register(
    result: TrainResult,
    *,
    tracking_uri: str,
    model_name: str,
    artifact_dir: Path,
    feature_service: str = "recommender_v1",
    tags: dict | None = None,
) -> RegisteredModel:
    """Log params / metrics / the pyfunc recommender, register a version and set its alias."""
    import mlflow
    import mlflow.pyfunc

    from recomart.model.artifacts import write_evaluation_artifacts
    from recomart.model.pyfunc import (
        FACTORS_ARTIFACT,
        METADATA_ARTIFACT,
        SEEN_ARTIFACT,
        RecommenderModel,
        recommender_signature,
    )

    experiment_id = ensure_experiment(tracking_uri, artifact_dir)
    gate = gate_decision(result)
    promoted, reason = gate.promote, gate.reason
    commit = git_commit()
    run_tags = _stringify(
        {
            "data_digest": result.data_digest,
            "git_commit": commit,
            "feature_service": feature_service,
            "model_kind": "hybrid blend over surprise.SVD(biased=True)",
            "blend_fitted": (result.metadata.get("blend") or {}).get("fitted"),
            "served_model": "refit_on_all_data" if result.refit_full else "train_split_model",
            "beats_popularity": result.beats_popularity,
            "promotion_reason": reason,
            "promotion_decision": "promoted" if promoted else "rejected",
            "split": result.split.get("kind"),
            "primary_metric": result.primary_metric,
            "compared_champion": result.champion_version,
            "data_source": result.dataset_source,
            **(tags or {}),
        }
    )
    metadata = {
        **result.metadata,
        "params": result.params,
        "metrics": result.metrics,
        "split": result.split,
        "data_digest": result.data_digest,
        "feature_service": feature_service,
        "git_commit": commit,
        "refit_full": result.refit_full,
        "gate": gate.as_dict(),
        "trained_through": _trained_through(result),
    }
    client = _client(tracking_uri)
    previous_uri = mlflow.get_tracking_uri()
    previous_registry = mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="recomart-model-") as tmp,
            mlflow.start_run(
                experiment_id=experiment_id, run_name=f"svd-{result.data_digest[:12]}", tags=run_tags
            ) as run,
        ):
            factors_path = result.model.save(Path(tmp) / "factors.npz")
            extra_artifacts = {}
            if result.eval_model is not result.model:
                # the model the test figures were measured on: later gates re-score these factors,
                # which never saw this run's test window (the served ones were refitted on it)
                extra_artifacts[EVAL_FACTORS_ARTIFACT] = str(result.eval_model.save(Path(tmp) / "eval_factors.npz"))
            seen_path = Path(tmp) / "seen.npz"
            sp.save_npz(seen_path, sp.csr_matrix(result.seen, dtype="int8"), compressed=True)
            meta_path = Path(tmp) / "metadata.json"
            meta_path.write_text(json.dumps(metadata, indent=2, default=str))
            mlflow.log_params(_stringify(result.params))
            mlflow.log_params(_stringify(blend_params(result.metadata)))
            if result.metadata.get("blend"):
                mlflow.log_dict(result.metadata["blend"], "blend.json")
            mlflow.log_metrics(result.flat_metrics())
            mlflow.log_metrics({f"time_{key}": value for key, value in result.timings.items()})
            mlflow.log_dict(result.split, "split.json")
            mlflow.log_dict(gate.as_dict(), "gate.json")
            _log_dataset(result)
            _log_trials(result, experiment_id)
            if result.curves or result.trials or result.score_samples:
                paths = write_evaluation_artifacts(
                    Path(tmp) / "evaluation",
                    curves=result.curves,
                    trials=result.trials,
                    tuning_metric=str(result.params.get("tuning_metric", result.primary_metric)),
                    score_samples=result.score_samples,
                )
                for path in paths:
                    mlflow.log_artifact(str(path), artifact_path="evaluation")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT_NAME,
                python_model=RecommenderModel(),
                artifacts={
                    FACTORS_ARTIFACT: str(factors_path),
                    SEEN_ARTIFACT: str(seen_path),
                    METADATA_ARTIFACT: str(meta_path),
                    **extra_artifacts,
                },
                code_paths=[str(_PACKAGE_DIR)],
                signature=recommender_signature(int(result.params.get("k", 10))),
                input_example=pd.DataFrame({"user_id": result.model.user_ids[:2].astype(str)}),
                pip_requirements=_pip_requirements(),
                registered_model_name=model_name,
            )
            run_id = run.info.run_id
    finally:
        mlflow.set_tracking_uri(previous_uri)
        mlflow.set_registry_uri(previous_registry)

    version = str(info.registered_model_version)
    for key, value in {**run_tags, "run_id": run_id}.items():
        client.set_model_version_tag(model_name, version, key, value)
    alias = CHAMPION if promoted else CHALLENGER
    client.set_registered_model_alias(model_name, alias, version)
    log.info("registered %s v%s as @%s: %s", model_name, version, alias, reason)
    return RegisteredModel(
        version=version,
        run_id=run_id,
        promoted=promoted,
        reason=reason,
        model_name=model_name,
        alias=alias,
        gate=gate.as_dict(),
    )


def current_champion_version(tracking_uri: str, model_name: str) -> str | None:
    """The version behind ``@champion``, or ``None`` while there is none (or no such model)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        registered = _client(tracking_uri).get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    # an alias that was never set is not an error: it is the state before the first promotion
    version = (registered.aliases or {}).get(CHAMPION)
    return str(version) if version is not None else None


def load_champion(
    tracking_uri: str, model_name: str, *, for_evaluation: bool = False
) -> tuple[FactorModel, dict, str] | None:
    """``(factors, metadata, version)`` of ``models:/<model_name>@champion``, or ``None`` if there is none.

    ``metadata`` holds the training params, metrics, split, data digest and anything the trainer put
    in ``TrainResult.metadata``: the blend weights (``"weights"``, applied by the recommend DAG) and
    their fit evidence (``"blend"``).  With ``for_evaluation`` the factors are those
    the champion's own test figures were measured on (fitted before its test window), when it has
    them, and ``metadata["evaluation_factors"]`` says which were returned: re-scoring the served
    factors, refitted on all data, would favour the champion on any window it was trained on.
    """
    import mlflow.artifacts

    from recomart.model.pyfunc import FACTORS_ARTIFACT, METADATA_ARTIFACT

    client = _client(tracking_uri)
    version = current_champion_version(tracking_uri, model_name)
    if version is None:
        return None
    mv = client.get_model_version(model_name, version)
    with tempfile.TemporaryDirectory(prefix="recomart-champion-") as tmp:
        # resolve the storage location with our client: a ``models:/`` URI would be resolved against
        # the process-global registry URI (a ./mlflow.db by default), not ``tracking_uri``
        source = client.get_model_version_download_uri(model_name, str(mv.version))
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri))
        meta = json.loads(_find_artifact(local, METADATA_ARTIFACT, "metadata.json").read_text())
        which = "served"
        path = _find_artifact(local, FACTORS_ARTIFACT, "factors.npz")
        if for_evaluation:
            with contextlib.suppress(FileNotFoundError):  # versions logged without eval factors
                path, which = _find_artifact(local, EVAL_FACTORS_ARTIFACT, "eval_factors.npz"), "eval"
        factors = FactorModel.load(path)
    trained_through = meta.get("eval_trained_through") if which == "eval" else meta.get("trained_through")
    meta = {
        **meta,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "tags": dict(mv.tags or {}),
        "evaluation_factors": which,
        "factors_trained_through": trained_through,
    }
    return factors, meta, str(mv.version)


def _find_artifact(model_dir: Path, key: str, filename: str) -> Path:
    """Path of a pyfunc artifact inside a downloaded model directory (MLmodel records where it went)."""
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    rel = artifacts.get(key, {}).get("path")
    path = model_dir / rel if rel else model_dir / "artifacts" / filename
    if not path.exists():
        raise FileNotFoundError(f"{filename} missing from the registered model at {model_dir}")
    return path
