"""Open the Feast feature store of ``feature_repo/`` and run ``feast plan`` / ``feast apply``.

``feature_store.yaml`` holds ``${VAR}`` references only. Feast resolves them with
``os.path.expandvars`` over the file text (``feast.repo_config.load_repo_config``), so a
plain shell works after ``eval "$(recomart env)"``. In Python we resolve the same file
against an explicit mapping (usually ``service_env(settings)`` merged over the process
environment), with the same ``$VAR`` / ``${VAR}`` rules, and hand Feast the resulting
``RepoConfig``: nothing here reads or patches ``os.environ``.

feast is imported inside the functions: importing this package must stay cheap (Airflow
parses DAG files that import it under a 30 s timeout). It is imported through
:func:`recomart.features.feast_import.import_feast`, which skips typeguard's import-time
instrumentation (most of a cold start); the ``feast`` CLI runs through
``python -m recomart.features.feast_cli`` for the same reason.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from recomart.features.feast_import import import_feast

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

FEATURE_STORE_YAML = "feature_store.yaml"

# posixpath.expandvars' pattern: $NAME or ${NAME}; unknown names are left as they are.
_VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)

_STORES: dict[tuple[str, str, str], FeatureStore] = {}
_STORES_LOCK = threading.Lock()


class FeatureStoreConfigError(ValueError):
    """``feature_store.yaml`` references variables that the given environment does not set."""


def resolve_config_text(repo_dir: Path, env: Mapping[str, str]) -> str:
    """The text of ``repo_dir/feature_store.yaml`` with ``$VAR``/``${VAR}`` replaced from ``env``.

    Raises :class:`FeatureStoreConfigError` naming every referenced variable missing from
    ``env`` (an empty value counts as set: an empty ``PGPASSWORD`` means no password).
    """
    text = (Path(repo_dir) / FEATURE_STORE_YAML).read_text()
    missing: list[str] = []

    def _sub(match: re.Match[str]) -> str:
        name = match.group(1).strip("{}")
        if name in env:
            return env[name]
        missing.append(name)
        return match.group(0)

    resolved = _VAR.sub(_sub, text)
    if missing:
        raise FeatureStoreConfigError(
            f"{Path(repo_dir) / FEATURE_STORE_YAML} needs {', '.join(sorted(set(missing)))}; "
            'pass service_env(settings) (or run `eval "$(recomart env)"` in a shell)'
        )
    return resolved


def load_repo_config(
    repo_dir: Path,
    env: Mapping[str, str],
    online_store_overrides: Mapping[str, object] | None = None,
    registry_overrides: Mapping[str, object] | None = None,
) -> RepoConfig:
    """Feast's ``RepoConfig`` for ``repo_dir``, resolved against ``env`` (validated by Feast).

    ``online_store_overrides`` replaces keys of the ``online_store`` block (used for the
    overwrite path of :func:`recomart.features.rematerialize_window`), ``registry_overrides``
    keys of the ``registry`` block (:func:`serving_store`).
    """
    import yaml

    import_feast()
    from feast.repo_config import RepoConfig

    raw = yaml.safe_load(resolve_config_text(repo_dir, env))
    if online_store_overrides:
        raw["online_store"] = {**raw["online_store"], **online_store_overrides}
    if registry_overrides:
        raw["registry"] = {**raw["registry"], **registry_overrides}
    config = RepoConfig(**raw)
    config.repo_path = Path(repo_dir)
    return config


def feature_store(repo_dir: Path, env: Mapping[str, str] | None = None) -> FeatureStore:
    """A ``FeatureStore`` for ``repo_dir``, cached per resolved configuration.

    With ``env`` (the usual case: ``{**os.environ, **service_env(settings)}`` built by the
    caller, or just ``service_env(settings)``), ``feature_store.yaml`` is resolved from that
    mapping. With ``env=None`` Feast resolves it from the process environment, as the
    ``feast`` CLI does. Construction costs seconds (registry engine, provider), so the
    store is built once per (repo, resolved yaml) and reused; :func:`apply` drops the cache.
    """
    import_feast()
    from feast import FeatureStore

    if env is None:
        return FeatureStore(repo_path=str(Path(repo_dir).resolve()))
    return _cached_store(repo_dir, env, {})


def _cached_store(
    repo_dir: Path,
    env: Mapping[str, str],
    online_store_overrides: Mapping[str, object],
    registry_overrides: Mapping[str, object] | None = None,
) -> FeatureStore:
    import_feast()
    from feast import FeatureStore

    repo_dir = Path(repo_dir).resolve()
    overrides = (sorted(online_store_overrides.items()), sorted((registry_overrides or {}).items()))
    key = (str(repo_dir), resolve_config_text(repo_dir, env), repr(overrides))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            config = load_repo_config(repo_dir, env, online_store_overrides, registry_overrides)
            store = FeatureStore(repo_path=str(repo_dir), config=config)
            _STORES[key] = store
        return store


def overwriting_store(repo_dir: Path, env: Mapping[str, str]) -> FeatureStore:
    """A store whose Redis writes skip Feast's event-time check (``skip_dedup: true``).

    Only for rewriting a window whose rows were corrected in place; see
    :func:`recomart.features.rematerialize_window`.
    """
    return _cached_store(repo_dir, env, {"skip_dedup": True})


def serving_store(repo_dir: Path, env: Mapping[str, str]) -> FeatureStore:
    """A store for a long-running reader (the API): the registry cache is refreshed by Feast's
    background thread (``cache_mode: thread``), so no request waits for, or fails on, a registry
    query to Postgres; while Postgres is down the last registry copy keeps serving."""
    return _cached_store(repo_dir, env, {}, {"cache_mode": "thread"})


def clear_store_cache() -> None:
    """Forget cached stores (after ``feast apply`` changed the registry, or in tests)."""
    with _STORES_LOCK:
        _STORES.clear()


def feast_command(*args: str) -> list[str]:
    """The command line of Feast's CLI with ``args``, run by this interpreter through
    :mod:`recomart.features.feast_cli` (same behaviour as the ``feast`` script, faster start)."""
    return [sys.executable, "-m", "recomart.features.feast_cli", *args]


def _run_feast(command: str, repo_dir: Path, env: Mapping[str, str], timeout_s: float) -> str:
    resolve_config_text(repo_dir, env)  # fail early, with the missing variable names
    result = subprocess.run(
        feast_command(command),
        cwd=Path(repo_dir),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"feast {command} failed (exit {result.returncode}) in {repo_dir}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def apply(repo_dir: Path, env: Mapping[str, str], timeout_s: float = 300.0) -> str:
    """Run ``feast apply`` in ``repo_dir`` with exactly ``env``; return its output.

    ``env`` is the whole environment of the subprocess, so pass the process environment
    merged with ``service_env(settings)`` (PATH, HOME, ... are needed). It registers the
    entities, sources, feature views and services in the SQL registry; re-running it
    without changes is a no-op.
    """
    output = _run_feast("apply", repo_dir, env, timeout_s)
    clear_store_cache()
    return output


def plan(repo_dir: Path, env: Mapping[str, str], timeout_s: float = 300.0) -> str:
    """Run ``feast plan`` (what ``apply`` would change) and return its output."""
    return _run_feast("plan", repo_dir, env, timeout_s)
