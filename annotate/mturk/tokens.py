"""UniqueRequestToken, and what it cannot do: every spelling of MTurk's "already used" answer,
and the reference our bonus reasons carry so a bonus can be found again after the token lapses.

MTurk remembers a token for 24 hours only. Within them a repeated create or payment is answered
with an error, spelled differently by operation and era; after them it is done again. So each
creating or paying call writes its intent first and looks MTurk's state up before acting (see
``publish`` and ``payments``); the token is the second line of defence, matched here.
"""

from __future__ import annotations

import re

from annotate.mturk.client import MTurkError

TOKEN_LIFETIME_S = 24 * 3600  # "The unique token expires after 24 hours" (API reference)
# TurkErrorCodes of a HIT created before under the same token, compared without case: the API
# reference spells it AWS.MechanicalTurk.HitAlreadyExists, other sources HITAlreadyExists.
HIT_EXISTS_CODES = frozenset({"hitalreadyexists"})
# Messages of an already-used token without such a code: SendBonus and
# CreateAdditionalAssignmentsForHIT ('The idempotency token "…" has already been processed.'),
# and 'The value of the UniqueRequestToken … has already been used'. A HIT's own message
# ("The HIT with ID … already exists for UniqueRequestToken …") names the token after.
TOKEN_WORDS = re.compile(r"\b(?:UniqueRequestToken|idempotency\s+token|request\s+token)\b", re.I)
ALREADY = re.compile(r"\balready\s+(?:been\s+(?:used|processed)|exists?)\b", re.I)
LOCAL_CODES = frozenset({"ParamValidation", "NoCredentials", "EndpointConnection"})
REFERENCE = " [ref {token}]"  # appended to a bonus's reason; the worker sees it too
REFERENCE_AT_END = re.compile(r"\[ref ([A-Za-z0-9_.:-]{1,64})\]\s*$")


def token_already_used(exc: MTurkError) -> bool:
    """Whether MTurk refused the call because its UniqueRequestToken was used (in any spelling).

    Publish and bonus (and extend) treat it the same way: the earlier call was done; find its
    result, never do it again. Errors raised on our side (bad parameters, no network) never are.
    """
    if exc.code in LOCAL_CODES:
        return False
    if exc.code.rsplit(".", 1)[-1].lower() in HIT_EXISTS_CODES:
        return True
    return bool(TOKEN_WORDS.search(exc.message) and ALREADY.search(exc.message))


def with_reference(reason: str, token: str) -> str:
    """The reason MTurk stores for a bonus: the operator's text, then `` [ref <token>]``."""
    return reason.rstrip() + REFERENCE.format(token=token)


def reference_of(reason: str) -> str:
    """The token a bonus reason ends with (``[ref …]``), or "" for a bonus not sent by us."""
    match = REFERENCE_AT_END.search(reason or "")
    return match.group(1) if match else ""
