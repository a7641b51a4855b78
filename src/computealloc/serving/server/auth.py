"""The proxy's API keys: which budget (the main one or a key's account) a request's
``Authorization`` header selects, and 401 for a missing or wrong key.
"""

from __future__ import annotations

import hmac

from computealloc.serving.fleet import AccountLink, Fleet
from computealloc.serving.server.schemas import APIError


def account(fleet: Fleet | None, expected: bytes | None, given: str) -> AccountLink | None:
    """The key account of the ``Authorization`` header ``given``; None for the main budget
    (when the header passes :func:`_check_key`, which a keyed fleet needs ``api_key`` for)."""
    link = None if fleet is None else fleet.account(given)
    if link is None and fleet is not None and fleet.keys and expected is None:
        raise APIError(
            401, "Unknown API key: send 'Authorization: Bearer <key>'.", "invalid_api_key"
        )
    if link is None:
        _check_key(expected, given)
    return link


def _check_key(expected: bytes | None, given: str) -> None:
    """Raise 401 unless the ``Authorization`` header ``given`` carries the expected key."""
    if expected is not None and not hmac.compare_digest(given.encode(), expected):
        raise APIError(
            401,
            "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
            "invalid_api_key",
        )
