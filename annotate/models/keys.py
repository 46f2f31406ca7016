"""Names and keys: what a researcher may call things, and the random keys workers see."""

from __future__ import annotations

import secrets

from django.core.validators import RegexValidator

from robustness.registry.models import NAME_PATTERN

name_validator = RegexValidator(NAME_PATTERN, "letters, digits, '.', '_' and '-' only")

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and retyped


def opaque_key() -> str:
    """A 128-bit random URL-safe key (22 characters): unguessable and meaningless."""
    return secrets.token_urlsafe(16)


def completion_code() -> str:
    """A code a worker pastes back into a recruiting panel: 10 unambiguous characters."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
