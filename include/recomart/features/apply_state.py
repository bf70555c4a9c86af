"""Skip ``feast apply`` when the feature definitions are unchanged since the last apply.

``feast apply`` of an unchanged repository changes nothing (``feast plan`` reports no changes, see
``feature_repo/README.md``) but still costs a process start, Feast's import and a registry round trip.
:func:`apply_if_changed` hashes what the registry is built from (the repository's Python files and
resolved ``feature_store.yaml``, the :mod:`recomart.features` modules they import, Feast's version)
and keeps the digest of the last successful apply in the Feast registry's own database
(table ``recomart_feast_apply``, one row per project): a registry that is dropped or recreated loses
the digest with it, so the next run applies again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import psycopg

from recomart.features.store import apply, resolve_config_text

_PACKAGE_DIR = Path(__file__).resolve().parent
_DDL = (
    "create table if not exists recomart_feast_apply ("
    " project text primary key, digest text not null, applied_at timestamptz not null default now())"
)


def definitions_digest(repo_dir: Path, env: Mapping[str, str]) -> str:
    """sha256 of the repository's ``*.py`` files, its resolved ``feature_store.yaml``, this package's
    modules and Feast's version."""
    digest = hashlib.sha256(metadata.version("feast").encode())
    digest.update(resolve_config_text(repo_dir, env).encode())
    for path in sorted(Path(repo_dir).glob("*.py")) + sorted(_PACKAGE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def registry_dsn(env: Mapping[str, str]) -> str:
    """libpq URL of the SQL registry (``FEAST_REGISTRY_URL`` without SQLAlchemy's driver suffix)."""
    return env["FEAST_REGISTRY_URL"].replace("postgresql+psycopg://", "postgresql://", 1)


def last_applied(env: Mapping[str, str], project: str) -> str | None:
    """Digest of the project's last successful apply, or None (never applied, or no record)."""
    with psycopg.connect(registry_dsn(env)) as conn:
        if conn.execute("select to_regclass('recomart_feast_apply') is not null").fetchone() != (True,):
            return None
        row = conn.execute("select digest from recomart_feast_apply where project = %s", (project,)).fetchone()
    return None if row is None else str(row[0])


def record_applied(env: Mapping[str, str], project: str, digest: str) -> None:
    with psycopg.connect(registry_dsn(env)) as conn:
        conn.execute(_DDL)
        conn.execute(
            "insert into recomart_feast_apply (project, digest) values (%s, %s)"
            " on conflict (project) do update set digest = excluded.digest, applied_at = now()",
            (project, digest),
        )


def apply_if_changed(repo_dir: Path, env: Mapping[str, str], timeout_s: float = 300.0) -> str:
    """``feast apply`` (see :func:`recomart.features.apply`) unless the definitions' digest equals the
    last apply's; returns Feast's output or the line that says why it was skipped."""
    project = env["RECOMART_FEAST_PROJECT"]
    digest = definitions_digest(repo_dir, env)
    if last_applied(env, project) == digest:
        return f"feast apply skipped: definitions of project {project} unchanged since the last apply ({digest[:12]})"
    output = apply(repo_dir, env, timeout_s)
    record_applied(env, project, digest)
    return output
