"""The dashboard's login: one generated password, a signed session cookie.

The password is ``<state>/secrets/dashboard_password`` (generated on first use, mode 0600, never in
git); the cookie is signed with another generated secret (``dashboard_session_key``) and carries
only the login time. It is ``HttpOnly``, ``SameSite=Strict`` (so another site cannot make the
browser post the "what if" form) and scoped to ``/ui``; it expires after :data:`SESSION_MAX_AGE_S`.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from recomart.credentials import secret

PASSWORD_SECRET = "dashboard_password"
SESSION_KEY_SECRET = "dashboard_session_key"
COOKIE = "recomart_dashboard"
SESSION_MAX_AGE_S = 12 * 3600
USER = "admin"


def password(state_dir: Path) -> str:
    """The dashboard password of the deployment whose state folder is ``state_dir`` (generated on first use)."""
    return secret(state_dir, PASSWORD_SECRET)


@dataclass(frozen=True)
class Login:
    """The deployment's dashboard password and the signer of its session cookies."""

    password: str
    signer: TimestampSigner

    @classmethod
    def of_state(cls, state_dir: Path) -> Login:
        """The login of the deployment whose state folder is ``state_dir`` (secrets generated on first use)."""
        return cls(password(state_dir), TimestampSigner(secret(state_dir, SESSION_KEY_SECRET)))

    def check(self, user: str, password: str) -> bool:
        """True for ``admin`` with the generated password (compared in constant time)."""
        return hmac.compare_digest(user.encode(), USER.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode()
        )

    def new_cookie(self) -> str:
        """A signed cookie value for a session starting now."""
        return self.signer.sign(str(int(time.time()))).decode()

    def valid(self, cookie: str | None) -> bool:
        """True if ``cookie`` was signed by this deployment less than the session's lifetime ago."""
        if not cookie:
            return False
        try:
            self.signer.unsign(cookie, max_age=SESSION_MAX_AGE_S)
        except (BadSignature, SignatureExpired):
            return False
        return True
