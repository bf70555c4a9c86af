"""The dashboard's login cookie and its reading of an API list (no services)."""

from __future__ import annotations

from pathlib import Path

import pytest
from itsdangerous import TimestampSigner

from recomart.dashboard import auth
from recomart.dashboard.pages import annotate


def test_password_is_generated_once_and_private(tmp_path: Path) -> None:
    first = auth.password(tmp_path)
    assert first == auth.password(tmp_path) and len(first) >= 24
    assert (tmp_path / "secrets" / auth.PASSWORD_SECRET).stat().st_mode & 0o777 == 0o600


def test_login_checks_user_and_password(tmp_path: Path) -> None:
    login = auth.Login.of_state(tmp_path)
    assert login.check("admin", login.password)
    assert not login.check("admin", login.password + "x")
    assert not login.check("root", login.password)


def test_cookie_signed_by_this_deployment_only(tmp_path: Path) -> None:
    login = auth.Login.of_state(tmp_path / "a")
    other = auth.Login.of_state(tmp_path / "b")
    cookie = login.new_cookie()
    assert login.valid(cookie)
    assert not other.valid(cookie)
    assert not login.valid(None) and not login.valid("") and not login.valid(cookie + "x")


def test_cookie_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    login = auth.Login.of_state(tmp_path)
    cookie = login.new_cookie()
    later = auth.time.time() + auth.SESSION_MAX_AGE_S + 5
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(later))
    assert not login.valid(cookie)


def test_annotate_marks_what_the_session_moved() -> None:
    live = {
        "items": [
            {"item_id": "b", "rank": 1, "reasons": {"item_item": 0.5, "session_boost": 0.8}},
            {"item_id": "a", "rank": 2, "reasons": {"item_item": 1.0, "popularity": 0.2}},
            {"item_id": "c", "rank": 3, "reasons": {"item_item": 0.25}},
        ]
    }
    annotate(live, nightly={"a": 1, "b": 2, "c": 3})
    by_id = {item["item_id"]: item for item in live["items"]}
    assert by_id["b"]["moved"] and by_id["b"]["previous_rank"] == 2
    assert by_id["a"]["moved"]  # pushed down from 1 to 2
    assert not by_id["c"]["moved"]
    assert by_id["a"]["bars"] == [("item_item", 1.0, 100), ("popularity", 0.2, 100)]
    assert by_id["c"]["bars"] == [("item_item", 0.25, 25)]
