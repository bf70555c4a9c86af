"""Erased users: the suppression list ``ops.erased_users`` and how a load leaves their records out.

``./recomart forget user <id>`` (:mod:`recomart.operations.forget`) deletes a user's rows everywhere
and lists the user here, so that loading a landing file that still holds them (a re-run of an old
date, a re-delivered file, the next users snapshot) does not bring them back.  The loader leaves out
every record of a listed user, good or rejected, and counts them: ``records_erased`` in the ledger
and in the load result (``records_read = records_loaded + records_rejected + records_erased``).

The list holds a keyed hash of the user id (HMAC-SHA256 under a secret key kept outside the
database, ``<state>/secrets/erasure_key``, mode 0600), never the id.  The list must outlive the
erasure, so it must not itself be the personal data it erased; a plain hash would not do, as user
ids come from small spaces (``C00001``.., five-digit customer numbers) that anyone holding the table
or a backup could hash in full and match.  Without the key the table reveals nothing; with it the
loader recognises an erased user's records.  Losing the key makes the list unusable: back it up with
the other secrets.  Each row also names the key it was made with (``key_id``, a fingerprint of the
key), so a load that finds users listed but has no key, or another key, fails (:class:`ErasureKeyError`)
rather than load them silently.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from recomart.errors import BadInputError
from recomart.ingest.feeds import FEEDS, Feed
from recomart.ingest.parse import ParseResult

KEY_FILE = "erasure_key"
_BIGINT = (-(2**63), 2**63 - 1)


class ErasureKeyError(BadInputError, RuntimeError):
    """Users are listed as erased but the load has no key, or another key, to recognise their records."""


def new_erasure_key() -> str:
    """A fresh erasure key as stored in its file: 32 random bytes, hex."""
    return secrets.token_hex(32)


def read_erasure_key(secrets_dir: Path) -> bytes | None:
    """The erasure key in ``secrets_dir`` (``None`` while no user was ever erased: then there is none).

    ``./recomart forget`` creates it (:func:`recomart.credentials.persistent_secret` with
    :func:`new_erasure_key`); loads only read it.
    """
    path = Path(secrets_dir) / KEY_FILE
    return bytes.fromhex(path.read_text().strip()) if path.exists() else None


def key_id(key: bytes) -> str:
    """A fingerprint of ``key`` (not the key): which key a row of ``ops.erased_users`` was made with."""
    return hmac.new(key, b"recomart erasure key id", hashlib.sha256).hexdigest()[:16]


def user_key(key: bytes, user_id: str) -> str:
    """The keyed hash of a (canonical) user id that ``ops.erased_users`` stores."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def canonical_user_id(feed: Feed, value: str | None) -> str | None:
    """The warehouse user id a raw value of ``feed``'s user column stands for (None: no user).

    ``decimal_integer`` follows dbt staging's ``nullif(trim(v), '')::numeric::bigint::text``: spaces
    trimmed, rounded half away from zero ('17850.0' -> '17850'); values Postgres could not cast are None.
    """
    if value is None:
        return None
    if feed.user_id_format == "text":
        return value
    text = value.strip(" ")
    if not text:
        return None
    try:
        number = Decimal(text).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or not _BIGINT[0] <= number <= _BIGINT[1]:
        return None
    return str(int(number))


def user_id_forms(user_id: str) -> set[str]:
    """The canonical forms of ``user_id`` over every feed with a user column (e.g. ``{'17850.0', '17850'}``
    for ``17850.0``): the ids to erase in every feed's terms."""
    forms = {canonical_user_id(feed, user_id) for feed in FEEDS.values() if feed.user_column is not None}
    return {form for form in forms if form is not None}


def record_user_id(feed: Feed, columns: tuple[str, ...], raw_record: str) -> str | None:
    """The user a raw CSV record is about: its field at the user column's position in ``columns`` (the
    file's column order), canonical; None when the record has no such field or cannot be read as CSV."""
    if feed.user_column is None or feed.user_column not in columns:
        return None
    try:
        fields = next(csv.reader([raw_record]), [])
    except csv.Error:
        return None
    position = columns.index(feed.user_column)
    return canonical_user_id(feed, fields[position]) if position < len(fields) else None


@dataclass(frozen=True)
class Suppression:
    """The erased users a load leaves out: their keyed hashes, the key, and how many were listed."""

    key: bytes | None = None
    user_keys: frozenset[str] = field(default_factory=frozenset)

    @property
    def listed(self) -> int:
        return len(self.user_keys)

    def is_erased(self, feed: Feed, value: str | None) -> bool:
        """Whether a raw user value of ``feed`` belongs to an erased user."""
        user = canonical_user_id(feed, value)
        return user is not None and self.key is not None and user_key(self.key, user) in self.user_keys


def read_suppression(conn: psycopg.Connection, key: bytes | None) -> Suppression:
    """The listed users; raises :class:`ErasureKeyError` when users are listed and ``key`` is None or is
    not the key they were listed with."""
    rows = conn.execute("select user_key, key_id from ops.erased_users").fetchall()
    if rows and key is None:
        raise ErasureKeyError(
            f"ops.erased_users lists {len(rows)} erased users, but the load has no erasure key to recognise"
            f" their records; pass the key ({KEY_FILE} in the secrets folder) so they stay out"
        )
    other = sorted({kid for _, kid in rows} - ({key_id(key)} if key is not None else set()))
    if other:
        raise ErasureKeyError(
            f"ops.erased_users lists users hashed with another erasure key (key id {', '.join(other)}) than the"
            f" one given; with it their records would load again. Restore that key ({KEY_FILE})"
        )
    return Suppression(key, frozenset(r[0] for r in rows))


def _erased_rows(feed: Feed, values: pa.ChunkedArray, suppression: Suppression) -> np.ndarray:
    """Mask of the values that belong to erased users (each distinct value is hashed once)."""
    encoded = pc.dictionary_encode(values.combine_chunks())
    distinct = encoded.dictionary.to_pylist()
    erased = np.array([suppression.is_erased(feed, v) for v in distinct] + [False], dtype=bool)
    indices = pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False)
    return erased[indices]


def leave_out_erased(parsed: ParseResult, feed: Feed, suppression: Suppression) -> ParseResult:
    """``parsed`` without the good and rejected records of erased users, counted in ``records_erased``."""
    if not suppression.user_keys or feed.user_column is None or parsed.records_read == 0:
        return parsed
    good = _erased_rows(feed, parsed.good.column(feed.user_column), suppression)
    rejected = [suppression.is_erased(feed, record_user_id(feed, parsed.columns, raw)) for raw in parsed.rejected_raw]
    if not good.any() and not any(rejected):
        return parsed
    keep = [i for i, erased in enumerate(rejected) if not erased]
    return replace(
        parsed,
        records_loaded=parsed.records_loaded - int(good.sum()),
        records_erased=parsed.records_erased + int(good.sum()) + (len(rejected) - len(keep)),
        good=parsed.good.filter(pa.array(~good)),
        good_spans=parsed.good_spans[~good],
        rejected_line_numbers=[parsed.rejected_line_numbers[i] for i in keep],
        rejected_raw=[parsed.rejected_raw[i] for i in keep],
        rejected_reasons=[parsed.rejected_reasons[i] for i in keep],
    )
