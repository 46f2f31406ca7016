"""Signed lease tokens: the only thing in a worker's URL that names their assignment.

The token signs the lease's random key, so a guessed or edited token fails the signature
before any database lookup, and a valid one says nothing about the study's contents.
"""

from __future__ import annotations

from django.core import signing

from annotate.errors import InvalidToken
from annotate.models import Lease

SALT = "annotate.lease"


def lease_token(lease: Lease) -> str:
    """The URL-safe signed token of ``lease``."""
    return signing.dumps(lease.key, salt=SALT, compress=False)


def lease_key_from_token(token: str) -> str:
    """The lease key a token signs; anything forged, edited or garbled → :class:`InvalidToken`."""
    if not token or len(token) > 200:
        raise InvalidToken()
    try:
        key = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise InvalidToken() from None
    if not isinstance(key, str):
        raise InvalidToken()
    return key
