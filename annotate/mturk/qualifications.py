"""Qualification requirements: MTurk's system ones from short flags, and our repeat-worker one.

``approval>=95``, ``approved-hits>=100``, ``locale=US`` / ``locale=US,CA`` / ``locale!=IN`` become
``QualificationRequirements`` entries. The repeat-worker qualification ("participated") is found
or created once per mode, cached in ``MTurkQualification``, granted on a worker's first accept and
required *not to exist* on every HIT that excludes previous workers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from botocore.client import BaseClient
from django.db import IntegrityError

from annotate.models import Study
from annotate.mturk.client import (
    MTurkError,
    call,
    get_client,
    is_local_endpoint,
    is_sandbox,
    pages,
)
from annotate.mturk.models import MTurkQualification
from robustness.errors import BlindspotError

logger = logging.getLogger(__name__)

APPROVAL_RATE = "000000000000000000L0"  # PercentAssignmentsApproved
APPROVED_HITS = "00000000000000000040"  # NumberHITsApproved
LOCALE = "00000000000000000071"  # Worker_Locale
REPEAT_NAME = "blindspot-participated"
REPEAT_DESCRIPTION = (
    "Took part in a Blindspot labeling study (such workers may not take part again)"
)
ALREADY_EXISTS = "AWS.MechanicalTurk.QualificationTypeAlreadyExists"

COMPARATORS = {
    ">=": "GreaterThanOrEqualTo",
    ">": "GreaterThan",
    "<=": "LessThanOrEqualTo",
    "<": "LessThan",
    "=": "EqualTo",
    "==": "EqualTo",
    "!=": "NotEqualTo",
}
NUMERIC = {"approval": (APPROVAL_RATE, 0, 100), "approved-hits": (APPROVED_HITS, 0, 10**9)}
FLAG = re.compile(r"^\s*([a-z-]+)\s*(>=|<=|==|!=|>|<|=)\s*(\S.*?)\s*$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
EXAMPLES = "approval>=95, approved-hits>=100, locale=US or locale=US,CA"


class QualificationError(BlindspotError, ValueError):
    """A qualification flag we cannot read (the message says what is accepted)."""


def parse_requirement(text: str) -> dict[str, Any]:
    """One flag as a QualificationRequirement, e.g. ``approval>=95`` → L0 ≥ [95]."""
    match = FLAG.match(text or "")
    if not match:
        raise QualificationError(f"cannot read qualification {text!r}; use e.g. {EXAMPLES}")
    name, op, value = match.groups()
    if name in NUMERIC:
        type_id, low, high = NUMERIC[name]
        if not value.isdigit() or not low <= int(value) <= high:
            raise QualificationError(
                f"{name} needs a whole number between {low} and {high}, not {value!r}"
            )
        return {
            "QualificationTypeId": type_id,
            "Comparator": COMPARATORS[op],
            "IntegerValues": [int(value)],
        }
    if name == "locale":
        if op not in ("=", "==", "!="):
            raise QualificationError(f"locale takes = or != (e.g. locale=US,CA), not {op}")
        countries = [c.strip().upper() for c in value.split(",") if c.strip()]
        bad = [c for c in countries if not COUNTRY.match(c)]
        if not countries or bad:
            raise QualificationError(
                f"locale needs two-letter country codes such as US or US,CA, not {value!r}"
            )
        several = len(countries) > 1
        comparator = {
            (False, False): "EqualTo",
            (False, True): "In",
            (True, False): "NotEqualTo",
            (True, True): "NotIn",
        }[(op == "!=", several)]
        return {
            "QualificationTypeId": LOCALE,
            "Comparator": comparator,
            "LocaleValues": [{"Country": c} for c in countries],
        }
    raise QualificationError(f"unknown qualification {name!r}; use e.g. {EXAMPLES}")


def describe_requirement(requirement: dict[str, Any]) -> str:
    """A requirement in words, for the confirmation summary."""
    names = {APPROVAL_RATE: "approval rate %", APPROVED_HITS: "approved HITs", LOCALE: "locale"}
    name = names.get(requirement["QualificationTypeId"], requirement["QualificationTypeId"])
    values = requirement.get("IntegerValues") or [
        v["Country"] for v in requirement.get("LocaleValues", [])
    ]
    shown = ",".join(str(v) for v in values)
    return f"{name} {requirement['Comparator']} {shown}".strip()


def repeat_qualification_name(sandbox: bool | None = None) -> str:
    """Separate names per mode (a sandbox type id means nothing on live MTurk), and for a local
    endpoint, whose ids must never be cached as the real sandbox's."""
    sandbox = is_sandbox() if sandbox is None else sandbox
    if is_local_endpoint():
        return f"{REPEAT_NAME}-local"
    return f"{REPEAT_NAME}-sandbox" if sandbox else REPEAT_NAME


def exclusion_requirement(type_id: str) -> dict[str, Any]:
    """Hide the HIT from workers who hold the repeat-worker qualification."""
    return {
        "QualificationTypeId": type_id,
        "Comparator": "DoesNotExist",
        "ActionsGuarded": "DiscoverPreviewAndAccept",
    }


def repeat_qualification(*, client: BaseClient | None = None, study: Study | None = None) -> str:
    """The repeat-worker qualification's type id in this mode: cached, found or created."""
    sandbox = is_sandbox()
    name = repeat_qualification_name(sandbox)
    cached = MTurkQualification.objects.filter(name=name, sandbox=sandbox).first()
    if cached is not None:
        return cached.type_id
    client = client or get_client()
    try:
        response = call(
            client,
            "create_qualification_type",
            study=study,
            Name=name,
            Description=REPEAT_DESCRIPTION,
            Keywords="blindspot",
            QualificationTypeStatus="Active",
        )
        type_id = response["QualificationType"]["QualificationTypeId"]
    except MTurkError as exc:
        if exc.code != ALREADY_EXISTS:
            raise
        type_id = _find_owned(client, name, study=study)
    try:
        MTurkQualification.objects.create(name=name, sandbox=sandbox, type_id=type_id)
    except IntegrityError:
        pass  # another process cached it first; MTurk names are unique, so it is the same type
    return type_id


def _find_owned(client: BaseClient, name: str, *, study: Study | None) -> str:
    for page in pages(
        client,
        "list_qualification_types",
        study=study,
        Query=name,
        MustBeRequestable=False,
        MustBeOwnedByCaller=True,
    ):
        for qualification in page.get("QualificationTypes", []):
            if qualification.get("Name") == name:
                return qualification["QualificationTypeId"]
    raise MTurkError(
        f"MTurk says qualification {name!r} exists but it is not among yours; "
        "check the requester site",
        ALREADY_EXISTS,
        operation="list_qualification_types",
    )


def grant_repeat_qualification(
    *, study: Study, worker_id: str, client: BaseClient | None = None
) -> bool:
    """Mark a worker as having taken part (audited); False, never an exception, if MTurk fails.

    The worker page calls this after leasing: a worker must not be turned away because MTurk is
    down (our own database check still stops a repeat), so errors are logged and swallowed here.
    """
    client = client or get_client(interactive=True)
    try:
        options = study.provider_options or {}
        type_id = (
            options.get("qualification_type_id") if options.get("sandbox") == is_sandbox() else None
        )
        type_id = type_id or repeat_qualification(client=client, study=study)
        call(
            client,
            "associate_qualification_with_worker",
            study=study,
            max_attempts=2,  # a worker is waiting for the page
            QualificationTypeId=type_id,
            WorkerId=worker_id,
            IntegerValue=1,
            SendNotification=False,
        )
    except MTurkError as exc:
        logger.warning("repeat-worker qualification not granted to %s: %s", worker_id, exc)
        return False
    return True
