"""Errors shared across packages."""

from __future__ import annotations


class BadInputError(Exception):
    """Input that a retry cannot fix (a malformed file, too many rejected records, a failed critical
    expectation): the task fails at once, without retries, and the message says what and where."""
