"""Log a trained recommender to MLflow, register it, point ``@champion`` / ``@challenger``, load it back.

The registered artifact is the whole hybrid (:mod:`recomart.model.pyfunc`): fitted components,
weights, options and cold-start rules, plus the factors the test figures were measured with
(``eval_factors``, for later gates) and ``metadata.json``.

Stages are deprecated (mlflow#10336): promotion is an alias.  The gate (:mod:`recomart.model.gate`)
promotes a version to ``@champion`` only if it beats popularity and the current champion (re-scored on
the same split) on the primary metric; otherwise it gets ``@challenger`` and the champion is left alone.
MLflow keeps no audit trail of alias moves (mlflow#2169): :mod:`recomart.model.promotion_log` keeps one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from recomart.features.names import FEATURE_SERVICE
from recomart.model.gate import GateDecision, decide, strategy_note
from recomart.model.serialization import (
    EVAL_FACTORS_ARTIFACT,
    HYBRID_ARRAYS,
    METADATA_ARTIFACT,
    RECOMMENDER_ARTIFACT,
    load_factors,
    load_hybrid,
    save_factors,
    save_hybrid,
)
from recomart.model.tracking import log_dataset, log_metrics, log_trials, stringify
from recomart.model.train import Champion, TrainResult
from recomart.ranking.blend import BlendWeights, blend_options
from recomart.ranking.hybrid import HybridRecommender

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "recomart"
CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT_NAME = "recommender"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_RUNTIME_PACKAGES = ("numpy", "pandas", "scipy", "numba", "scikit-learn", "pyarrow", "lightgbm", "mlflow")


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


@dataclass(frozen=True)
class LoadedChampion:
    """The ``@champion`` as served: the hybrid loaded through its pyfunc, its metadata and version."""

    recommender: HybridRecommender
    metadata: dict[str, Any]
    version: str


def git_commit(cwd: Path = _PACKAGE_DIR) -> str | None:
    """The commit the code was loaded from, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _client(tracking_uri: str) -> Any:
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
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException:  # created concurrently by another task
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if exp.artifact_location.rstrip("/") != location.rstrip("/"):
        log.warning("experiment %s keeps its artifact location %s (not %s)", name, exp.artifact_location, location)
    return str(exp.experiment_id)


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
    champion's figure is then optimistic.
    """
    gate = decide(
        result.metrics,
        metric=result.primary_metric,
        margin=result.gate_margin,
        champion_version=result.champion_version,
    )
    strategy = str(result.metadata.get("strategy", "blend"))
    note = strategy_note(result.metrics, result.primary_metric, strategy, result.metadata.get("ranker"))
    gate = dataclasses.replace(gate, reason=f"{gate.reason} [{note}]")
    if result.split.get("champion_saw_test_data"):
        note = " (the champion was trained on data reaching into this test window, so its figure is optimistic)"
        gate = dataclasses.replace(gate, reason=gate.reason + note)
    return gate


def _trained_through(result: TrainResult) -> str | None:
    """Latest timestamp of the data the served model was fitted on (None when unknown)."""
    if result.data is None or "event_timestamp" not in result.data:
        return None
    return pd.Timestamp(result.data["event_timestamp"].max()).isoformat()


def blend_params(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``weight_<component>`` of the blend weights and ``blend_<option>`` of the component options
    stored with the model (empty without them)."""
    weights = metadata.get("weights") or {}
    options = (metadata.get("blend") or {}).get("options") or {}
    return {
        **{f"weight_{name}": float(value) for name, value in weights.items()},
        **{f"blend_{name}": value for name, value in options.items()},
    }


def _run_tags(result: TrainResult, gate: GateDecision, commit: str | None, feature_service: str) -> dict[str, str]:
    return stringify(
        {
            "data_digest": result.data_digest,
            "git_commit": commit,
            "feature_service": feature_service,
            "model_kind": _model_kind(result),
            "strategy": result.metadata.get("strategy", "blend"),
            "blend_fitted": (result.metadata.get("blend") or {}).get("fitted"),
            "served_model": "refit_on_all_data" if result.refit_full else "train_split_model",
            "beats_popularity": result.beats_popularity,
            "promotion_reason": gate.reason,
            "promotion_decision": "promoted" if gate.promote else "rejected",
            "split": result.split.get("kind"),
            "primary_metric": result.primary_metric,
            "compared_champion": result.champion_version,
            "data_source": result.dataset_source,
        }
    )


def _model_kind(result: TrainResult) -> str:
    if result.metadata.get("strategy") == "ranker":
        return "LightGBM LambdaRank over candidate generators (SVD, EASE, RP3beta, ...) with feature-store features"
    return "hybrid blend over surprise.SVD(biased=True)"


def _metadata(result: TrainResult, gate: GateDecision, commit: str | None, feature_service: str) -> dict[str, Any]:
    return {
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


@contextlib.contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """Point the process-global MLflow tracking and registry URIs at ``tracking_uri`` for a block."""
    import mlflow

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def _log_run(result: TrainResult, experiment_id: str, gate: GateDecision, folder: Path, *, trials: bool) -> None:
    """Params, metrics, the blend, split and gate records, the data set, the charts, and with ``trials``
    one nested run per tuning trial."""
    import mlflow

    from recomart.model.charts import write_evaluation_artifacts

    mlflow.log_params(stringify(result.params))
    mlflow.log_params(stringify(blend_params(result.metadata)))
    if result.metadata.get("blend"):
        mlflow.log_dict(result.metadata["blend"], "blend.json")
    if result.metadata.get("ranker"):
        mlflow.log_dict(result.metadata["ranker"], "ranker.json")
    log_metrics(result)
    mlflow.log_dict(result.split, "split.json")
    mlflow.log_dict(gate.as_dict(), "gate.json")
    log_dataset(result)
    if trials:
        log_trials(result, experiment_id)
    if result.curves or result.trials or result.score_samples:
        paths = write_evaluation_artifacts(
            folder / "evaluation",
            curves=result.curves,
            trials=result.trials,
            tuning_metric=str(result.params.get("tuning_metric", result.primary_metric)),
            score_samples=result.score_samples,
        )
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path="evaluation")


def _log_model(result: TrainResult, metadata: dict[str, Any], model_name: str, folder: Path) -> Any:
    """Log and register the pyfunc (the hybrid, the evaluation factors, the metadata); returns its info."""
    import mlflow.pyfunc

    from recomart.model.pyfunc import RecommenderModel, recommender_signature

    meta_path = folder / "metadata.json"
    meta_path.write_text(json.dumps(metadata, indent=2, default=str))
    artifacts = {
        RECOMMENDER_ARTIFACT: str(save_hybrid(result.recommender, folder / "recommender")),
        # the factors the test figures were measured on: later gates re-score these, which never saw
        # this run's test window (the served ones were refitted on it)
        EVAL_FACTORS_ARTIFACT: str(save_factors(result.eval_model, folder / "eval_factors.npz")),
        METADATA_ARTIFACT: str(meta_path),
    }
    example = pd.DataFrame({"user_id": result.model.user_ids[:2].astype(str)})
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT_NAME,
        python_model=RecommenderModel(),
        artifacts=artifacts,
        code_paths=[str(_PACKAGE_DIR)],
        signature=recommender_signature(int(result.params.get("k", 10))),
        input_example=example,
        pip_requirements=_pip_requirements(),
        registered_model_name=model_name,
    )


def log_and_register(
    result: TrainResult,
    *,
    tracking_uri: str,
    model_name: str,
    artifact_dir: Path,
    feature_service: str = FEATURE_SERVICE,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> RegisteredModel:
    """Log the run and the pyfunc recommender, register a version and set its alias by the gate.

    ``run_id``: an open run to log into, whose nested trial runs are already logged (the train DAG's
    parent run, :mod:`recomart.model.trial_runs`); otherwise a new run, with one nested run per trial."""
    import mlflow

    experiment_id = ensure_experiment(tracking_uri, artifact_dir)
    gate = gate_decision(result)
    commit = git_commit()
    run_tags = {**_run_tags(result, gate, commit, feature_service), **stringify(tags or {})}
    metadata = _metadata(result, gate, commit, feature_service)
    with (
        _tracking(tracking_uri),
        tempfile.TemporaryDirectory(prefix="recomart-model-") as tmp,
        mlflow.start_run(
            run_id=run_id, experiment_id=experiment_id, run_name=f"svd-{result.data_digest[:12]}", tags=run_tags
        ) as run,
    ):
        _log_run(result, experiment_id, gate, Path(tmp), trials=run_id is None)
        info = _log_model(result, metadata, model_name, Path(tmp))
        run_id = run.info.run_id
    client = _client(tracking_uri)
    version = str(info.registered_model_version)
    for key, value in {**run_tags, "run_id": run_id}.items():
        client.set_model_version_tag(model_name, version, key, value)
    alias = CHAMPION if gate.promote else CHALLENGER
    client.set_registered_model_alias(model_name, alias, version)
    log.info("registered %s v%s as @%s: %s", model_name, version, alias, gate.reason)
    return RegisteredModel(version, run_id, gate.promote, gate.reason, model_name, alias, gate.as_dict())


def current_champion_version(tracking_uri: str, model_name: str, alias: str = CHAMPION) -> str | None:
    """The version behind ``@champion`` (or ``alias``), or ``None`` while there is none (or no such model)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        registered = _client(tracking_uri).get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    # an alias that was never set is not an error: it is the state before the first promotion
    version = (registered.aliases or {}).get(alias)
    return str(version) if version is not None else None


def read_champion_alias(conn: psycopg.Connection, model_name: str, alias: str = CHAMPION) -> str | None:
    """The version behind ``@champion`` (or ``alias``) from MLflow's own registry table, in one indexed query.

    For the API's poller, which checks the alias every second: MLflow's client spends about 20 ms
    of Python per lookup (SQLAlchemy sessions), which holds the GIL against the requests of that
    process. Raises ``psycopg.Error`` when the table is not there (MLflow has not created its
    schema yet) or has another shape; callers fall back to :func:`current_champion_version`.
    ``tests/integration/test_serving.py`` checks that both agree.
    """
    rows = conn.execute(
        "select version from registered_model_aliases where name = %s and alias = %s", (model_name, alias)
    ).fetchall()
    if len(rows) > 1:
        raise psycopg.DataError(f"{len(rows)} @{alias} rows for {model_name!r} (several MLflow workspaces?)")
    return str(rows[0][0]) if rows else None


def set_champion(tracking_uri: str, model_name: str, version: str) -> None:
    """Point ``@champion`` at ``version`` (which must exist; MLflow raises otherwise)."""
    client = _client(tracking_uri)
    client.get_model_version(model_name, str(version))
    client.set_registered_model_alias(model_name, CHAMPION, str(version))
    log.info("%s@%s now points at v%s", model_name, CHAMPION, version)


def register_recommender(
    tracking_uri: str, model_name: str, recommender: HybridRecommender, folder: Path, metadata: Mapping[str, Any]
) -> str:
    """Register ``recommender`` as a new version of ``model_name`` without a training run (no alias set):
    the pyfunc with the hybrid and ``metadata`` is saved under ``folder`` (which must outlive the version:
    it is the version's source).  For tests and benchmarks that need a loadable ``@champion``; returns the
    version."""
    import mlflow.pyfunc

    from recomart.model.pyfunc import RecommenderModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(dict(metadata), default=str))
    artifacts = {
        RECOMMENDER_ARTIFACT: str(save_hybrid(recommender, folder / "recommender")),
        METADATA_ARTIFACT: str(folder / "metadata.json"),
    }
    mlflow.pyfunc.save_model(str(folder / "model"), python_model=RecommenderModel(), artifacts=artifacts)
    client = _client(tracking_uri)
    if not client.search_registered_models(f"name = '{model_name}'"):
        client.create_registered_model(model_name)
    return str(client.create_model_version(model_name, source=(folder / "model").as_uri()).version)


ERASED_USER_DATA_TAG = "erased_user_data"
#: arrays of a registered version that name users: the hybrid's SVD (``cf/user_ids``) and the evaluation factors
_USER_ARRAYS = ((RECOMMENDER_ARTIFACT, "recommender/hybrid.npz"), (EVAL_FACTORS_ARTIFACT, "eval_factors.npz"))


def _holds_users(model_dir: Path, user_ids: set[str]) -> bool:
    """Whether any per-user array (``*user_ids``) of the downloaded version names one of ``user_ids``."""
    import numpy as np

    for key, filename in _USER_ARRAYS:
        path = _find_artifact(model_dir, key, filename)
        if path.is_dir():
            path = path / HYBRID_ARRAYS
        with np.load(path, allow_pickle=False) as arrays:
            for name in arrays.files:
                if name.endswith("user_ids") and not user_ids.isdisjoint(arrays[name].astype(str).tolist()):
                    return True
    return False


def versions_holding_users(tracking_uri: str, model_name: str, user_ids: set[str]) -> list[str]:
    """The registered versions of ``model_name`` whose artifact stores per-user data (factors, the users
    of the evaluation factors and of the input example) of one of ``user_ids``; [] without the model."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return []
    found = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        with tempfile.TemporaryDirectory(prefix="recomart-erasure-") as tmp:
            source = client.get_model_version_download_uri(model_name, str(mv.version))
            local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri)
            if _holds_users(Path(local), user_ids):
                found.append(str(mv.version))
    return found


def mark_versions_erased(tracking_uri: str, model_name: str, versions: list[str], erasure_id: int) -> None:
    """Tag ``versions`` with ``erased_user_data``: the ids of the erasures (``ops.erasures``) whose user
    they still hold, comma-separated.  Retrain, then delete the tagged versions that are not needed."""
    client = _client(tracking_uri)
    for version in versions:
        tags = client.get_model_version(model_name, version).tags or {}
        ids = [i for i in tags.get(ERASED_USER_DATA_TAG, "").split(",") if i] + [str(erasure_id)]
        client.set_model_version_tag(model_name, version, ERASED_USER_DATA_TAG, ",".join(dict.fromkeys(ids)))


@contextlib.contextmanager
def _champion_files(
    tracking_uri: str, model_name: str, alias: str = CHAMPION, version: str | None = None
) -> Iterator[tuple[Path, dict[str, Any], str] | None]:
    """(local model directory, metadata, version) of ``@champion`` (or ``alias``; or of ``version`` itself
    when given) in a temporary directory, or None."""
    import mlflow.artifacts

    if version is None:
        version = current_champion_version(tracking_uri, model_name, alias)
    if version is None:
        yield None
        return
    client = _client(tracking_uri)
    mv = client.get_model_version(model_name, version)
    with tempfile.TemporaryDirectory(prefix="recomart-champion-") as tmp:
        # resolve the storage location with our client: a ``models:/`` URI would be resolved against
        # the process-global registry URI (a ./mlflow.db by default), not ``tracking_uri``
        source = client.get_model_version_download_uri(model_name, str(mv.version))
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri))
        meta = json.loads(_find_artifact(local, METADATA_ARTIFACT, "metadata.json").read_text())
        meta = {**meta, "version": str(mv.version), "run_id": mv.run_id, "tags": dict(mv.tags or {})}
        yield local, meta, str(mv.version)


def load_champion(
    tracking_uri: str, model_name: str, alias: str = CHAMPION, *, version: str | None = None
) -> LoadedChampion | None:
    """``models:/<model_name>@champion`` loaded through its pyfunc (the object the nightly job and the
    pyfunc's ``predict`` rank with), or ``None`` while there is none. ``alias`` loads another alias
    (the API's experiments load ``@challenger``); ``version`` pins the version the alias named when a
    sharded run began (every shard ranks with the same one, even if the alias moves meanwhile).

    ``metadata`` holds the training params, metrics, split, data digest, the blend weights
    (``"weights"``) and their fit evidence (``"blend"``), plus ``version``, ``run_id`` and ``tags``.
    """
    import mlflow.pyfunc

    with _champion_files(tracking_uri, model_name, alias, version) as files:
        if files is None:
            return None
        local, meta, loaded = files
        recommender = mlflow.pyfunc.load_model(str(local)).unwrap_python_model().recommender
    return LoadedChampion(recommender, meta, loaded)


def load_champion_for_gate(tracking_uri: str, model_name: str) -> Champion | None:
    """The ``@champion`` as the gate re-scores it (:class:`recomart.model.train.Champion`): the factors
    its own test figures were measured with (fitted before its test window), its weights and options,
    or ``None`` while there is none.  Re-scoring the served factors, refitted on all data, would favour
    the champion on any window it was trained on.  A champion registered as the learned ranker brings
    it (:func:`recomart.model.ranker_stage.rescore_champion_ranker` re-scores it)."""
    with _champion_files(tracking_uri, model_name) as files:
        if files is None:
            return None
        local, meta, version = files
        factors = load_factors(_find_artifact(local, EVAL_FACTORS_ARTIFACT, "eval_factors.npz"))
        ranker = None
        if meta.get("strategy") == "ranker":
            ranker = load_hybrid(_find_artifact(local, RECOMMENDER_ARTIFACT, "recommender")).ranker
    return Champion(
        ranker=ranker,
        factors=factors,
        version=version,
        trained_through=meta.get("eval_trained_through"),
        weights=BlendWeights.from_meta(meta),
        options=blend_options((meta.get("blend") or {}).get("options")),
    )


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
