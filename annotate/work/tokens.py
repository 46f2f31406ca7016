"""Signed lease tokens: the only thing in a worker's URL that names their assignment.

The token is the lease's random key signed with a salted HMAC, so a guessed or edited token
fails the signature before any database lookup, and a valid one says nothing about the study.
It carries no timestamp (expiry lives on the lease): one lease always has one URL, so a reload
finds its images in the browser's cache.
"""

from __future__ import annotations

import re

from django.core import signing

from annotate.errors import InvalidToken
from annotate.models import Lease

SALT = "annotate.lease"
KEY = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # what models.opaque_key produces
MAX_LENGTH = 200


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def lease_token(lease: Lease) -> str:
    """The URL-safe signed token of ``lease`` (``key:signature``; the same on every call)."""
    return _signer().sign(lease.key)


def lease_key_from_token(token: str) -> str:
    """The lease key a token signs; anything forged, edited or garbled → :class:`InvalidToken`."""
    if not isinstance(token, str) or not token or len(token) > MAX_LENGTH:
        raise InvalidToken()
    try:
        key = _signer().unsign(token)
    except signing.BadSignature:
        raise InvalidToken() from None
    if not KEY.match(key):
        raise InvalidToken()
    return key
