"""Logical days given by a person (the ingest DAG's trigger form, the CLI): strictly ``YYYY-MM-DD``.

``date.fromisoformat`` of a prefix would read ``2011-12-05/../../etc`` as 2011-12-05; a value is either
exactly a calendar date or refused with an error that names the parameter.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from recomart.errors import BadInputError

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class InvalidDayError(BadInputError, ValueError):
    """A day parameter that is not exactly a ``YYYY-MM-DD`` calendar date."""


def parse_day(value: object, name: str) -> date:
    """``value`` (a ``YYYY-MM-DD`` string or a date) as a date; otherwise ``InvalidDayError`` (a
    ``ValueError``) naming ``name``."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise InvalidDayError(f"{name} {value!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidDayError(f"{name} {value!r} is not a valid date in the form YYYY-MM-DD ({exc})") from None
