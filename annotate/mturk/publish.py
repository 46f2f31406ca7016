"""Publishing a study as MTurk HITs: plan (no network, the cost), then create, idempotently.

One HIT type per publish, then HITs of at most ``assignments_per_hit`` (default 9: MTurk's fee
doubles from 10 on). Each HIT's intent (a ``pending`` row: study, mode, index, token and
RequesterAnnotation) is written before MTurk is asked to create it. A pending row left by a
crash is resolved by the next run: the HIT is looked up by its annotation (``ListHITs``) and
recorded, and created only if MTurk has none, so no delay (the token lapses after 24 hours)
leaves a second, orphaned HIT. Live MTurk closed on 2026-09-30 and is refused.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from botocore.client import BaseClient
from django.conf import settings
from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone

from annotate.models import LIVE, Lease, Study
from annotate.mturk import fees
from annotate.mturk.client import (
    CLOSURE_NOTICE,
    MTurkError,
    call,
    get_client,
    is_live_endpoint,
    is_local_endpoint,
    is_sandbox,
    mode_label,
    pages,
    preview_url,
)
from annotate.mturk.models import Hit, HitAssignment
from annotate.mturk.qualifications import (
    QualificationError,
    describe_requirement,
    exclusion_requirement,
    parse_requirement,
    repeat_qualification,
)
from annotate.mturk.tokens import token_already_used
from annotate.providers.registry import LOCAL
from robustness.errors import BlindspotError

PROVIDER = "mturk"  # Study.provider of an MTurk study (MTurkProvider.name)
DEFAULT_PER_HIT = 9  # psiTurk's choice: 10 or more assignments per HIT cost 40% instead of 20%
DEFAULT_LIFETIME = 3 * 86400
DEFAULT_AUTO_APPROVE = 3 * 86400
DEFAULT_KEYWORDS = "image, labeling, digits, handwriting, research"
EXTERNAL_QUESTION = (
    '<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/'
    'AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd">'
    "<ExternalURL>{url}</ExternalURL><FrameHeight>0</FrameHeight></ExternalQuestion>"
)
DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
ENTITY_ID = re.compile(r"\b(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*[0-9])[A-Z0-9]{20,64}\b")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


class PublishError(BlindspotError):
    """Publishing cannot go on (the message says why and what to do)."""


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``3d`` (or plain seconds) → seconds."""
    match = DURATION.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 2h or 3d")
    return int(match.group(1)) * UNITS[match.group(2)]


def request_token(study: Study, *, sandbox: bool, index: int) -> str:
    """The HIT's idempotency token: the same study, mode and index give the same token."""
    return f"bs-{study.key[:12]}-{'sb' if sandbox else 'lv'}-{index}"


def annotation(study: Study, token: str) -> str:
    """The HIT's RequesterAnnotation, by which a HIT of an interrupted run is found again."""
    return f"{study.name} {token}"[:255]


def external_question(url: str) -> str:
    """The ExternalQuestion XML framing ``url`` (``&`` escaped; height 0 = fit the window)."""
    return EXTERNAL_QUESTION.format(url=escape(url))


def study_url(study: Study, *, sandbox: bool) -> str:
    """The https address MTurk frames; refused when PUBLIC_BASE_URL cannot serve MTurk."""
    base = (getattr(settings, "PUBLIC_BASE_URL", "") or "").strip().rstrip("/")
    if not base:
        raise PublishError(
            "PUBLIC_BASE_URL is not set: MTurk needs the https address where workers reach this "
            "server (e.g. PUBLIC_BASE_URL=https://study.example.org)"
        )
    parts = urlsplit(base)
    if parts.scheme != "https" and not is_local_endpoint():
        raise PublishError(
            f"PUBLIC_BASE_URL must be an https:// address (MTurk frames only https pages), "
            f"not {base!r}"
        )
    if not sandbox and (parts.hostname or "") in LOOPBACK:
        raise PublishError(f"live HITs cannot send workers to {base}: set a public PUBLIC_BASE_URL")
    return base + reverse("annotate:study-entry", args=[study.key])


@dataclass(frozen=True)
class PublishOptions:
    """What ``mturk publish`` was asked for; empty strings and None mean the study's defaults."""

    reward: Decimal
    assignments_per_hit: int = DEFAULT_PER_HIT
    lifetime_seconds: int = DEFAULT_LIFETIME
    duration_seconds: int | None = None  # default: the study's lease time
    auto_approve_seconds: int = DEFAULT_AUTO_APPROVE
    qualifications: tuple[str, ...] = ()
    exclude_previous_workers: bool = False
    title: str = ""
    description: str = ""
    keywords: str = DEFAULT_KEYWORDS


@dataclass
class Capacity:
    """How many more worker-assignments MTurk should offer for a study, and why."""

    assignments: int
    live_leases: int
    published: int
    consumed: int

    @property
    def outstanding(self) -> int:
        return max(0, self.published - self.consumed)

    @property
    def needed(self) -> int:
        return max(0, self.assignments - self.live_leases - self.outstanding)


def study_capacity(*, study: Study, sandbox: bool, now: dt.datetime | None = None) -> Capacity:
    """Unleased assignments minus MTurk slots still open in unexpired HITs of this mode.

    A slot is used up once its MTurk assignment is submitted (or reviewed) or holds a live lease
    here; a returned or abandoned one is open again on MTurk, so it is not counted as used. A
    pending HIT (intent written, not yet recorded) counts as offered: it may exist on MTurk.
    """
    now = now or timezone.now()
    hits = Hit.objects.filter(study=study, sandbox=sandbox).filter(
        Q(expiration__isnull=True) | Q(expiration__gt=now)
    )
    published = hits.aggregate(n=Sum("max_assignments"))["n"] or 0
    consumed = (
        HitAssignment.objects.filter(hit__in=hits)
        .filter(~Q(mturk_status=HitAssignment.MTurkStatus.ACCEPTED) | Q(lease__status__in=LIVE))
        .count()
    )
    return Capacity(
        assignments=study.assignments.count(),
        live_leases=Lease.objects.filter(study=study, status__in=LIVE).count(),
        published=published,
        consumed=consumed,
    )


@dataclass
class PublishPlan:
    """Everything ``publish`` will do, priced, before anything is spent."""

    study: Study
    sandbox: bool
    options: PublishOptions
    url: str
    duration_seconds: int
    title: str
    description: str
    requirements: list[dict[str, Any]]
    capacity: Capacity
    first_index: int
    sizes: list[int]
    cost: fees.Cost
    pending: list[Hit] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to create and no interrupted HIT to resolve."""
        return not self.sizes and not self.pending

    def lines(self) -> list[str]:
        """The summary printed before asking to publish."""
        o = self.options
        mode = mode_label(self.sandbox)
        out = [
            f"Mode: {mode}"
            + (" (sandbox: costs nothing real)" if self.sandbox else " (REAL MONEY)"),
            f"Study {self.study.name}: {self.capacity.assignments} assignments, "
            f"{self.capacity.live_leases} leased, {self.capacity.outstanding} open in earlier "
            f"HITs → {self.capacity.needed} to publish",
            f"HITs: {len(self.sizes)} ({', '.join(map(str, self.sizes)) or 'none'} assignments)",
            *(
                [
                    f"Interrupted: {len(self.pending)} HIT(s) of an earlier run are looked up on "
                    "MTurk first (by annotation) and created only if MTurk has none"
                ]
                if self.pending
                else []
            ),
            f"Reward ${fees.money(o.reward)} per assignment; MTurk fee "
            f"{int(fees.fee_rate(max(self.sizes or [1])) * 100)}% (min $0.01)",
            f"Cost: {self.cost.describe()}",
            f"Title: {self.title}",
            f"Duration {self.duration_seconds}s, lifetime {o.lifetime_seconds}s, auto-approve "
            f"after {o.auto_approve_seconds}s",
            f"Worker page: {self.url}",
        ]
        reqs = [describe_requirement(r) for r in self.requirements]
        if o.exclude_previous_workers:
            reqs.append("no previous Blindspot participation")
        out.append("Qualifications: " + ("; ".join(reqs) if reqs else "none"))
        return out + [f"Note: {w}" for w in self.warnings]


def publish_plan(*, study: Study, options: PublishOptions) -> PublishPlan:
    """Check the study and the options and price the HITs; calls nothing on MTurk.

    Live MTurk (Amazon's live endpoint) is refused: it closed on 2026-09-30.
    """
    if is_live_endpoint():
        raise PublishError(CLOSURE_NOTICE)
    if study.status != Study.Status.OPEN:
        raise PublishError(
            f"study {study.name} is {study.status}: open it first "
            f"(manage.py open_study --study {study.name})"
        )
    if study.provider not in (LOCAL, PROVIDER):
        raise PublishError(f"study {study.name} recruits through {study.provider}, not MTurk")
    if not 1 <= options.assignments_per_hit <= 1000:
        raise PublishError("--assignments-per-hit must be between 1 and 1000")
    sandbox = is_sandbox()
    url = study_url(study, sandbox=sandbox)
    try:
        requirements = [parse_requirement(text) for text in options.qualifications]
    except QualificationError as exc:
        raise PublishError(str(exc)) from None
    capacity = study_capacity(study=study, sandbox=sandbox)
    per = options.assignments_per_hit
    sizes = [per] * (capacity.needed // per) + (
        [capacity.needed % per] if capacity.needed % per else []
    )
    last = Hit.objects.filter(study=study, sandbox=sandbox).order_by("-index").first()
    pending = list(Hit.objects.filter(study=study, sandbox=sandbox).pending().order_by("index"))
    duration = options.duration_seconds or study.lease_seconds
    warnings = []
    if duration != study.lease_seconds:
        warnings.append(
            f"the HIT duration ({duration}s) differs from the study's lease time "
            f"({study.lease_seconds}s): a worker may lose the lease while MTurk still holds it"
        )
    if options.exclude_previous_workers and study.assignments_per_worker > 1:
        warnings.append(
            f"excluding previous workers stops each worker after one assignment, although the "
            f"study allows {study.assignments_per_worker}"
        )
    if per >= fees.LARGE_HIT:
        warnings.append(
            "10 or more assignments per HIT cost a 40% fee instead of 20%; "
            "--assignments-per-hit 9 avoids it"
        )
    return PublishPlan(
        study=study,
        sandbox=sandbox,
        options=options,
        url=url,
        duration_seconds=duration,
        title=options.title or study.title,
        description=options.description
        or f"Say which digit each of {study.assignment_size} small images shows.",
        requirements=requirements,
        capacity=capacity,
        first_index=last.index + 1 if last else 0,
        sizes=sizes,
        # an interrupted HIT is priced as if it had to be created (an upper bound)
        cost=fees.rewards_cost(
            (size, options.reward) for size in [*sizes, *(h.max_assignments for h in pending)]
        ),
        pending=pending,
        warnings=warnings,
    )


@dataclass
class PublishResult:
    """What a publish did: the HIT type and the HITs created or found again."""

    hit_type_id: str
    created: list[Hit]
    recovered: list[Hit]

    def lines(self) -> list[str]:
        out = [f"HIT type {self.hit_type_id}"]
        for hit in self.created:
            out.append(f"created HIT {hit.hit_id} ({hit.max_assignments} assignments)")
        for hit in self.recovered:
            out.append(f"recorded HIT {hit.hit_id} created by an earlier, interrupted run")
        hits = self.created + self.recovered
        if hits and hits[0].hit_group_id:
            out.append(f"Preview: {preview_url(hits[0].hit_group_id, sandbox=hits[0].sandbox)}")
        return out


def publish(*, plan: PublishPlan, client: BaseClient | None = None) -> PublishResult:
    """Resolve the HITs an interrupted run left pending, then create the plan's new HITs, each
    written as an intent before MTurk is asked and recorded as soon as MTurk answers.

    Stops at the first MTurk failure (PublishError says how many HITs exist); running publish
    again creates the rest and nothing twice, however much later.
    """
    if is_live_endpoint():
        raise PublishError(CLOSURE_NOTICE)
    client = client or get_client()
    study, o = plan.study, plan.options
    requirements = list(plan.requirements)
    type_id = ""
    try:
        if o.exclude_previous_workers:
            type_id = repeat_qualification(client=client, study=study)
            requirements.append(exclusion_requirement(type_id))
        hit_type: dict[str, Any] = dict(
            AutoApprovalDelayInSeconds=o.auto_approve_seconds,
            AssignmentDurationInSeconds=plan.duration_seconds,
            Reward=fees.money(o.reward),
            Title=plan.title,
            Keywords=o.keywords,
            Description=plan.description,
        )
        if requirements:
            hit_type["QualificationRequirements"] = requirements
        hit_type_id = call(client, "create_hit_type", study=study, **hit_type)["HITTypeId"]
    except MTurkError as exc:
        raise PublishError(f"{exc}; nothing was published") from None
    _remember_options(plan, hit_type_id=hit_type_id, qualification_type_id=type_id)
    result = PublishResult(hit_type_id=hit_type_id, created=[], recovered=[])
    total = len(plan.pending) + len(plan.sizes)
    work: list[tuple[Hit | None, int, int]] = [
        (h, h.index, h.max_assignments) for h in plan.pending
    ]
    work += [(None, plan.first_index + i, size) for i, size in enumerate(plan.sizes)]
    for row, index, size in work:
        try:
            if row is None:
                row = _intend(plan, hit_type_id=hit_type_id, index=index, size=size)
                existed = _create(client, plan, row, hit_type_id=hit_type_id)
            else:  # an interrupted run's intent: MTurk may have the HIT, unknown to us
                existed = _resolve(client, plan, row, hit_type_id=hit_type_id)
        except MTurkError as exc:
            done = len(result.created) + len(result.recovered)
            raise PublishError(
                f"{exc}; {done} of {total} HITs are published — run publish again "
                "to create the rest (nothing is created twice)"
            ) from None
        (result.recovered if existed else result.created).append(row)
    return result


def _remember_options(plan: PublishPlan, *, hit_type_id: str, qualification_type_id: str) -> None:
    """Store the MTurk settings on the study before any HIT exists (the worker page reads them)."""
    study, o = plan.study, plan.options
    study.provider = PROVIDER
    study.provider_options = {
        **(study.provider_options or {}),
        "sandbox": plan.sandbox,
        "exclude_previous_workers": o.exclude_previous_workers,
        "qualification_type_id": qualification_type_id,
        "reward": fees.money(o.reward),
        "hit_type_id": hit_type_id,
        "assignments_per_hit": o.assignments_per_hit,
        "duration_seconds": plan.duration_seconds,
        "lifetime_seconds": o.lifetime_seconds,
        "auto_approve_seconds": o.auto_approve_seconds,
        "qualifications": list(o.qualifications),
        "title": plan.title,
    }
    study.save(update_fields=["provider", "provider_options"])


def _intend(plan: PublishPlan, *, hit_type_id: str, index: int, size: int) -> Hit:
    """Write the HIT's intent (a pending row, committed) before anything is sent to MTurk."""
    o = plan.options
    token = request_token(plan.study, sandbox=plan.sandbox, index=index)
    return Hit.objects.create(
        study=plan.study,
        sandbox=plan.sandbox,
        index=index,
        request_token=token,
        annotation=annotation(plan.study, token),
        state=Hit.State.PENDING,
        hit_id=None,
        hit_type_id=hit_type_id,
        max_assignments=size,
        reward=o.reward,
        lifetime_seconds=o.lifetime_seconds,
        duration_seconds=plan.duration_seconds,
        auto_approve_seconds=o.auto_approve_seconds,
    )


def _resolve(client: BaseClient, plan: PublishPlan, row: Hit, *, hit_type_id: str) -> bool:
    """A pending HIT of an interrupted run: recorded if MTurk lists it under our annotation,
    else created now (with the same token); True if it existed."""
    found = find_hit(client, study=plan.study, annotation=row.annotation)
    if found is not None:
        record_hit(row, found)
        return True
    row.hit_type_id = hit_type_id
    row.lifetime_seconds = plan.options.lifetime_seconds
    row.save(update_fields=["hit_type_id", "lifetime_seconds"])
    return _create(client, plan, row, hit_type_id=hit_type_id)


def _create(client: BaseClient, plan: PublishPlan, row: Hit, *, hit_type_id: str) -> bool:
    """Ask MTurk to create the pending ``row``'s HIT and record it; True if MTurk answered that
    our token was used already (the HIT is then fetched and recorded, not created again)."""
    study = plan.study
    try:
        response = call(
            client,
            "create_hit_with_hit_type",
            study=study,
            HITTypeId=hit_type_id,
            MaxAssignments=row.max_assignments,
            LifetimeInSeconds=row.lifetime_seconds,
            Question=external_question(plan.url),
            RequesterAnnotation=row.annotation,
            UniqueRequestToken=row.request_token,
        )
        existed = False
    except MTurkError as exc:
        if not token_already_used(exc):
            raise
        hit_id = _existing_hit_id(client, exc, annotation=row.annotation, study=study)
        response = call(client, "get_hit", study=study, HITId=hit_id)
        existed = True
    record_hit(row, response["HIT"])
    return existed


def find_hit(client: BaseClient, *, study: Study, annotation: str) -> dict[str, Any] | None:
    """The HIT MTurk lists under ``annotation`` (every page of ``ListHITs``), or None."""
    for page in pages(client, "list_hits", study=study):
        for hit in page.get("HITs", []):
            if hit.get("RequesterAnnotation") == annotation:
                return hit
    return None


def _existing_hit_id(client: BaseClient, exc: MTurkError, *, annotation: str, study: Study) -> str:
    """The HIT id MTurk names in its already-used-token message, else found by our annotation."""
    match = ENTITY_ID.search(exc.message)
    if match:
        return match.group(0)
    found = find_hit(client, study=study, annotation=annotation)
    if found is not None:
        return found["HITId"]
    raise MTurkError(
        f"{exc.message} — and no HIT annotated {annotation!r} was found; look on the requester "
        "site",
        exc.code,
        operation=exc.operation,
    )


def record_hit(row: Hit, hit: dict[str, Any]) -> None:
    """The intent ``row`` becomes the published HIT MTurk describes (``hit``, as MTurk sent it)."""
    row.hit_id = hit["HITId"]
    row.state = Hit.State.PUBLISHED
    row.hit_type_id = hit.get("HITTypeId") or row.hit_type_id
    row.hit_group_id = hit.get("HITGroupId", "")
    row.max_assignments = hit.get("MaxAssignments") or row.max_assignments
    row.reward = Decimal(hit.get("Reward") or row.reward)
    row.duration_seconds = hit.get("AssignmentDurationInSeconds") or row.duration_seconds
    row.auto_approve_seconds = hit.get("AutoApprovalDelayInSeconds") or row.auto_approve_seconds
    row.status = hit.get("HITStatus", "")
    row.expiration = hit.get("Expiration")
    row.save()
