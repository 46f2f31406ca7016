"""Publishing a study on Prolific: plan (no network, the cost and hourly rate), then create and
publish, so that no crash at any delay leaves two studies or none.

The intent (a :class:`ProlificStudy` row with a fresh internal name that carries our study key)
is written before anything is sent. A run that finds the intent without a Prolific id pages
through the workspace's studies for that internal name before creating one (Prolific's list
filters by state only), and a study found as a draft is published; one already live is left so.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from annotate.models import LIVE, Assignment, Lease, Study
from annotate.prolific import fees
from annotate.prolific.client import ProlificClient, get_client, is_local_endpoint, mode_label
from annotate.prolific.models import ProlificStudy
from annotate.providers.registry import LOCAL
from robustness.errors import BlindspotError

PROVIDER = "prolific"  # Study.provider of a Prolific study (ProlificProvider.name)
DEVICES = ("desktop", "mobile", "tablet")
FILTER = re.compile(r"^\s*([a-z0-9_-]+)\s*(>=|<=|=)\s*([^\s].*?)\s*$")
URL_PARAMS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
#: Prolific's statuses of a study that is live (taking or holding participants).
LIVE_STATES = {"ACTIVE", "PAUSED", "SCHEDULED", "PUBLISHING"}


class PublishError(BlindspotError):
    """Publishing cannot go on (the message says why and what to do)."""


def parse_filter(text: str) -> dict[str, Any]:
    """``approval_rate>=95`` → a range filter, ``sex=Female,Male`` → a values filter."""
    match = FILTER.match(text or "")
    if not match:
        raise PublishError(
            f"--filter {text!r}: write NAME>=N, NAME<=N or NAME=V1,V2 (Prolific's filter ids, "
            "e.g. approval_rate>=95)"
        )
    name, op, value = match.groups()
    if op == "=":
        return {"filter_id": name, "selected_values": [v.strip() for v in value.split(",")]}
    try:
        number = float(value)
    except ValueError:
        raise PublishError(f"--filter {text!r}: {value!r} is not a number") from None
    bound = int(number) if number.is_integer() else number
    if name == "approval_rate":
        rng = {"lower": bound, "upper": 100} if op == ">=" else {"lower": 0, "upper": bound}
    else:
        rng = {"lower": bound} if op == ">=" else {"upper": bound}
    return {"filter_id": name, "selected_range": rng}


def study_url(study: Study) -> str:
    """Where Prolific sends participants, with its three URL parameters filled in by Prolific."""
    base = (getattr(settings, "PUBLIC_BASE_URL", "") or "").strip().rstrip("/")
    if not base:
        raise PublishError(
            "PUBLIC_BASE_URL is not set: Prolific needs the https address where participants "
            "reach this server (e.g. PUBLIC_BASE_URL=https://study.example.org)"
        )
    parts = re.match(r"^(https?)://([^/:]+)", base)
    scheme, host = (parts.group(1), parts.group(2)) if parts else ("", "")
    if not is_local_endpoint() and (scheme != "https" or host in LOOPBACK):
        raise PublishError(
            f"PUBLIC_BASE_URL must be a public https:// address for a live study, not {base!r}"
        )
    return base + reverse("annotate:study-entry", args=[study.key]) + "?" + URL_PARAMS


@dataclass(frozen=True)
class PublishOptions:
    """What ``prolific publish`` was asked for."""

    reward: Decimal  # per place, major units
    currency: str = "GBP"
    estimated_minutes: int = 4
    max_minutes: int | None = None  # default: Prolific's own rule from the estimate
    places: int | None = None  # default: the study's open assignments
    devices: tuple[str, ...] = ("desktop", "mobile")
    filters: tuple[str, ...] = ()
    exclude_previous_participants: bool = False
    title: str = ""
    description: str = ""


def open_assignments(study: Study) -> int:
    """Assignments no live lease holds: the places a new Prolific study should offer."""
    held = Lease.objects.filter(study=study, status__in=LIVE).values("assignment")
    return Assignment.objects.filter(study=study).exclude(pk__in=held).count()


def current(study: Study) -> ProlificStudy | None:
    """The study's latest Prolific study (draft, publishing or published), if any."""
    return ProlificStudy.objects.filter(study=study).order_by("-created", "-pk").first()


@dataclass
class PublishPlan:
    """Everything ``publish`` will do, priced, before anything is sent."""

    study: Study
    options: PublishOptions
    url: str
    places: int
    max_minutes: int
    filters: list[dict[str, Any]]
    cost: fees.Cost
    hourly: Decimal
    resume: ProlificStudy | None = None
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        o, c = self.options, self.options.currency
        out = [
            f"Mode: {mode_label()}"
            + (" (local endpoint: no real money)" if is_local_endpoint() else " (REAL MONEY)"),
            f"Study {self.study.name}: {self.places} places "
            f"({open_assignments(self.study)} open assignments)",
            f"Reward {fees.show(o.reward, c)} for ~{o.estimated_minutes} min "
            f"= {fees.show(self.hourly, c)}/hour; at most {self.max_minutes} min",
            f"Cost: {self.cost.describe()}",
            f"Devices: {', '.join(o.devices)}",
            "Filters: "
            + (", ".join(o.filters) if o.filters else "none")
            + ("; no previous Blindspot participants" if o.exclude_previous_participants else ""),
            f"Participant page: {self.url}",
        ]
        if self.resume is not None:
            out.append(
                f"Resuming an interrupted publish ({self.resume.internal_name}, "
                f"{self.resume.get_state_display()})"
            )
        return out + [f"Note: {w}" for w in self.warnings]


def default_max_minutes(estimated: int) -> int:
    """Prolific's default maximum time for an estimate: 3 × the estimate + 2 minutes."""
    return 3 * estimated + 2


def publish_plan(*, study: Study, options: PublishOptions) -> PublishPlan:
    """Check the study and the options, price the places; sends nothing."""
    if study.status != Study.Status.OPEN:
        raise PublishError(
            f"study {study.name} is {study.status}: open it first "
            f"(manage.py open_study --study {study.name})"
        )
    if study.provider not in (LOCAL, PROVIDER):
        raise PublishError(f"study {study.name} recruits through {study.provider}, not Prolific")
    unknown = [d for d in options.devices if d not in DEVICES]
    if unknown or not options.devices:
        raise PublishError(f"--device takes {', '.join(DEVICES)} (comma-separated)")
    if options.estimated_minutes < 1:
        raise PublishError("--estimated-minutes must be at least 1")
    max_minutes = options.max_minutes or default_max_minutes(options.estimated_minutes)
    if max_minutes < options.estimated_minutes:
        raise PublishError("--max-minutes cannot be less than --estimated-minutes")
    resume = current(study)
    if resume is not None and resume.state == ProlificStudy.State.PUBLISHED:
        raise PublishError(
            f"study {study.name} is already on Prolific ({resume.prolific_id}, "
            f"{resume.remote_status or 'published'}): use `prolific add-places` to offer more"
        )
    hourly = fees.hourly(options.reward, options.estimated_minutes)
    floor = fees.min_hourly(options.currency)
    if floor is not None and hourly < floor:
        lowest = fees.lowest_reward(options.currency, options.estimated_minutes)
        c = options.currency
        raise PublishError(
            f"{fees.show(options.reward, c)} for {options.estimated_minutes} min is "
            f"{fees.show(hourly, c)}/hour, under the minimum {fees.show(floor, c)}/hour "
            f"(PROLIFIC_MIN_HOURLY): pay at least {fees.show(lowest or floor, c)}"
        )
    places = options.places if options.places is not None else open_assignments(study)
    if resume is not None:
        places = resume.places
    if places < 1:
        raise PublishError(f"study {study.name} has no open assignments to offer")
    filters = [parse_filter(text) for text in options.filters]
    warnings = []
    if max_minutes * 60 > study.lease_seconds:
        warnings.append(
            f"Prolific allows {max_minutes} min but a lease lapses after "
            f"{study.lease_seconds // 60} min without a save: a participant idle that long "
            "loses their images (and the assignment goes to someone else)"
        )
    if options.places is not None and options.places > open_assignments(study):
        warnings.append(
            f"{options.places} places for {open_assignments(study)} open assignments: "
            "the extra participants will find the study full"
        )
    return PublishPlan(
        study=study,
        options=options,
        url=study_url(study),
        places=places,
        max_minutes=max_minutes,
        filters=filters,
        cost=fees.cost(options.reward, places, options.currency),
        hourly=hourly,
        resume=resume,
        warnings=warnings,
    )


def _code() -> str:
    return secrets.token_hex(4).upper()


def _intent(plan: PublishPlan) -> ProlificStudy:
    """The row standing for the remote study: the interrupted one, or a new one written now."""
    if plan.resume is not None:
        return plan.resume
    o, study = plan.options, plan.study
    with transaction.atomic():
        row = ProlificStudy.objects.create(
            study=study,
            internal_name=f"blindspot:{study.key}:{secrets.token_hex(4)}",
            currency=o.currency.upper(),
            reward=fees.to_minor(o.reward),
            estimated_minutes=o.estimated_minutes,
            max_minutes=plan.max_minutes,
            places=plan.places,
            completion_code=_code(),
            returned_code=_code(),
            options={
                "devices": list(o.devices),
                "filters": plan.filters,
                "filter_text": list(o.filters),
                "exclude_previous_participants": o.exclude_previous_participants,
                "title": o.title or study.title,
                "description": o.description,
                "url": plan.url,
            },
        )
        study.provider = PROVIDER
        study.provider_options = {
            **(study.provider_options or {}),
            "exclude_previous_workers": o.exclude_previous_participants,
        }
        study.save(update_fields=["provider", "provider_options"])
    return row


def create_body(row: ProlificStudy) -> dict[str, Any]:
    """The draft study Prolific is asked to create for ``row``."""
    study, o = row.study, row.options
    filters = list(o.get("filters", []))
    if o.get("exclude_previous_participants"):
        earlier = list(
            ProlificStudy.objects.exclude(pk=row.pk)
            .exclude(prolific_id="")
            .values_list("prolific_id", flat=True)
        )
        if earlier:
            filters.append({"filter_id": "previous_studies", "selected_values": earlier})
    return {
        "name": o.get("title") or study.title,
        "internal_name": row.internal_name,
        "description": o.get("description")
        or f"Say which digit each of {study.assignment_size} small images of handwritten digits "
        "shows. It takes a few minutes and works on a phone.",
        "external_study_url": o["url"],
        "prolific_id_option": "url_parameters",
        "completion_codes": [
            {
                "code": row.completion_code,
                "code_type": "COMPLETED",
                "actions": [{"action": "MANUALLY_REVIEW"}],
            },
            {
                "code": row.returned_code,
                "code_type": "NO_CONSENT",
                "actions": [{"action": "REQUEST_RETURN", "return_reason": "did not consent"}],
            },
        ],
        "total_available_places": row.places,
        "estimated_completion_time": row.estimated_minutes,
        "maximum_allowed_time": row.max_minutes,
        "reward": row.reward,
        "currency_code": row.currency,
        "device_compatibility": o.get("devices", ["desktop", "mobile"]),
        "filters": filters,
    }


def find_remote(client: ProlificClient, internal_name: str) -> dict[str, Any] | None:
    """The workspace's study carrying ``internal_name`` (paging through every study)."""
    for remote in client.studies():
        if remote.get("internal_name") == internal_name:
            return remote
    return None


@dataclass
class PublishResult:
    row: ProlificStudy
    lines: list[str]


def publish(*, plan: PublishPlan, client: ProlificClient | None = None) -> PublishResult:
    """Create (or find) the draft, then publish it; each step recorded as soon as it is known."""
    client = client or get_client()
    row = _intent(plan)
    lines: list[str] = []
    study = plan.study
    if not row.prolific_id:
        remote = find_remote(client, row.internal_name)
        if remote is None:
            remote = client.create_study(create_body(row), study=study)
            lines.append(f"created draft study {remote['id']}")
        else:
            lines.append(f"found the draft {remote['id']} an interrupted run created")
        row.prolific_id = remote["id"]
        row.remote_status = remote.get("status", "")
        row.state = ProlificStudy.State.DRAFT
        row.save(update_fields=["prolific_id", "remote_status", "state"])
    if row.state in (ProlificStudy.State.DRAFT, ProlificStudy.State.PUBLISHING):
        row.state = ProlificStudy.State.PUBLISHING
        row.save(update_fields=["state"])
        remote = client.get_study(row.prolific_id, study=study)
        if remote.get("status") == "UNPUBLISHED":
            remote = client.transition_study(row.prolific_id, "PUBLISH", study=study)
            lines.append(f"published {row.prolific_id}")
        else:
            lines.append(f"{row.prolific_id} was already {remote.get('status')}")
        row.remote_status = remote.get("status", "")
        row.state = ProlificStudy.State.PUBLISHED
        row.published = timezone.now()
        row.save(update_fields=["remote_status", "state", "published"])
    return PublishResult(row=row, lines=lines)
