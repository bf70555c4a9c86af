"""The MLflow UI server: ``mlflow server --app-name basic-auth``, users and permissions in Postgres.

Every request but ``/health`` needs a login.  The admin user ``admin`` is created on the first
start with the password generated into ``<state>/secrets/mlflow_admin_password``; the auth app's
settings (its database URI carries the pipeline role's password) are written to a mode-0600 file
in the same folder.  The pipeline itself logs and registers through the tracking database
(``Settings.mlflow_tracking_uri``), not through this server.
"""

from __future__ import annotations

import configparser
import io
import os
import secrets
from pathlib import Path

from recomart.config import Settings
from recomart.credentials import persistent_secret, secret, secrets_dir, write_secret
from recomart.tools import tool_env, venv_bin

ADMIN_USER = "admin"


def auth_config_path(s: Settings) -> Path:
    return secrets_dir(s.state_dir) / f"mlflow_auth_{s.db_prefix}.ini"


def write_auth_config(s: Settings) -> Path:
    """The basic-auth app's settings for this deployment (database ``<prefix>_mlflow_auth``)."""
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        # a logged-in user without an explicit permission may read; only admins change anything
        "default_permission": "READ",
        "database_uri": s.sqlalchemy_url(s.mlflow_auth_db),
        "admin_username": ADMIN_USER,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    text = io.StringIO()
    config.write(text)
    path = auth_config_path(s)
    write_secret(path, text.getvalue())
    return path


def admin_password(s: Settings) -> str:
    return secret(s.state_dir, "mlflow_admin_password")


def server_env(s: Settings) -> dict[str, str]:
    """The tool environment plus the auth app's settings, admin password and CSRF key."""
    flask_key = persistent_secret(secrets_dir(s.state_dir) / "mlflow_flask_secret_key", secrets.token_hex)
    return {
        **tool_env(s),
        "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(s)),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password(s),  # used only to create the admin on the first start
        "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_key,
    }


def server_args(s: Settings) -> list[str]:
    s.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
    return [
        venv_bin("mlflow"),
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        s.mlflow_tracking_uri,
        "--default-artifact-root",
        s.mlflow_artifacts_dir.as_uri(),
        "--host",
        s.bind_host,
        "--port",
        str(s.mlflow_port),
        "--workers",
        "1",
    ]


def main() -> None:
    """Run the MLflow UI in the foreground (the compose file's ``mlflow`` service)."""
    from recomart.config import settings

    s = settings()
    args = server_args(s)
    os.execve(args[0], args, server_env(s))


if __name__ == "__main__":
    main()
