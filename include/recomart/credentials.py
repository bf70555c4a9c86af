"""Generated secrets in ``<state>/secrets`` (mode 0600), SCRAM verifiers and masking for display.

Every password RecoMart generates lives in one file per secret under the git-ignored state folder;
``docs/security.md`` lists them and how to rotate each.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SECRET_FILE_MODE = 0o600
SCRAM_ITERATIONS = 4096  # Postgres's default scram_iterations


def secrets_dir(state_dir: Path) -> Path:
    return state_dir / "secrets"


def new_password() -> str:
    """A random password that is safe in URLs, YAML, libpq conninfo and Feast's ``key=value,`` strings."""
    return secrets.token_urlsafe(24)


def _write_private_tmp(path: Path, value: str) -> Path:
    """Write ``value`` to a temporary file beside ``path``, mode 0600 from creation on; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return tmp


def write_secret(path: Path, value: str) -> None:
    """Replace ``path`` with ``value`` atomically, readable by the owner only."""
    os.replace(_write_private_tmp(path, value), path)


def persistent_secret(path: Path, generate: Callable[[], str] = new_password) -> str:
    """The secret stored at ``path``, generated on first use; concurrent first uses agree on one value."""
    if not path.exists():
        tmp = _write_private_tmp(path, generate())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # fails if another process created it first: theirs wins
        tmp.unlink()
    return path.read_text().strip()


def secret(state_dir: Path, name: str) -> str:
    """The generated secret ``name`` of the deployment whose state folder is ``state_dir``."""
    return persistent_secret(secrets_dir(state_dir) / name)


# --- Postgres SCRAM-SHA-256 ---------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """A Postgres ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` verifier for ``password``
    (RFC 5802/7677), so ``ALTER ROLE … PASSWORD`` never sends the plain password to the server."""
    salt = salt or os.urandom(16)
    stored_key, server_key = _scram_keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def scram_matches(password: str, verifier: str | None) -> bool:
    """True if ``verifier`` (a ``pg_authid.rolpassword``) was made from ``password``."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        head, keys = verifier.removeprefix("SCRAM-SHA-256$").split("$")
        iterations, salt = head.split(":")
        expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, verifier)


# --- display -------------------------------------------------------------------------------
def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and printed settings)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
