"""The study's life on Prolific after publishing: pause, start, stop, add places, message, and
the status report. Each reads Prolific's state first and says what it found."""

from __future__ import annotations

from collections import Counter

from annotate.models import Study
from annotate.prolific import fees
from annotate.prolific.client import ProlificClient, ProlificError, get_client, mode_label
from annotate.prolific.models import ProlificBonus, ProlificStudy, ProlificSubmission
from annotate.prolific.publish import current, open_assignments
from annotate.providers.base import Result
from robustness.errors import BlindspotError

#: The transition each action asks for, and the states Prolific allows it from.
TRANSITIONS = {
    "pause": ("PAUSE", {"ACTIVE"}),
    "start": ("START", {"PAUSED"}),
    "stop": ("STOP", {"ACTIVE", "PAUSED"}),
}


class RemoteError(BlindspotError):
    """An action on the study's Prolific study that cannot be done (nothing was sent)."""


def published(study: Study) -> ProlificStudy:
    """The study's Prolific study; refused when it has none yet."""
    row = current(study)
    if row is None or not row.prolific_id:
        raise RemoteError(
            f"study {study.name} is not on Prolific yet: `prolific publish --study {study.name}`"
        )
    return row


def transition(*, study: Study, action: str, client: ProlificClient | None = None) -> Result:
    """Pause, start (resume) or stop the study's Prolific study, if its state allows."""
    client = client or get_client()
    row = published(study)
    name, allowed = TRANSITIONS[action]
    info = client.get_study(row.prolific_id, study=study)
    status = info.get("status", "")
    if status not in allowed:
        row.remote_status = status
        row.save(update_fields=["remote_status"])
        return Result(lines=[f"{row.prolific_id} is {status}: nothing to {action}"])
    info = client.transition_study(row.prolific_id, name, study=study)
    row.remote_status = info.get("status", status)
    row.save(update_fields=["remote_status"])
    return Result(lines=[f"{row.prolific_id}: {status} → {row.remote_status}"])


def stop(*, study: Study, client: ProlificClient | None = None) -> Result:
    return transition(study=study, action="stop", client=client)


def add_places(
    *, study: Study, places: int | None = None, client: ProlificClient | None = None
) -> Result:
    """Raise the study's places by ``places`` (default: to cover every open assignment).

    The target is written before the request, so a rerun after a lost answer finishes that
    target instead of adding the places a second time.
    """
    client = client or get_client()
    row = published(study)
    info = client.get_study(row.prolific_id, study=study)
    total = int(info.get("total_available_places", row.places))
    taken = int(info.get("places_taken", 0))
    pending = row.options.get("places_target")
    if pending is not None:
        if total >= pending:
            row.places = total
            row.options = {k: v for k, v in row.options.items() if k != "places_target"}
            row.save(update_fields=["places", "options"])
            return Result(
                lines=[
                    f"{row.prolific_id}: an interrupted add-places already took effect "
                    f"({total} places); nothing added"
                ]
            )
        target = int(pending)
    else:
        wanted = places if places is not None else max(0, open_assignments(study) - (total - taken))
        if wanted <= 0:
            return Result(
                lines=[
                    f"{row.prolific_id}: {total - taken} places open for "
                    f"{open_assignments(study)} open assignments; none added"
                ]
            )
        target = total + wanted
        row.options = {**row.options, "places_target": target}
        row.save(update_fields=["options"])
    info = client.update_study(row.prolific_id, {"total_available_places": target}, study=study)
    row.places = int(info.get("total_available_places", target))
    row.options = {k: v for k, v in row.options.items() if k != "places_target"}
    row.save(update_fields=["places", "options"])
    cost = fees.cost(fees.from_minor(row.reward), target - total, row.currency)
    return Result(lines=[f"{row.prolific_id}: {total} → {row.places} places (+{cost.describe()})"])


def message(
    *,
    study: Study,
    body: str,
    participants: list[str],
    client: ProlificClient | None = None,
) -> Result:
    """Send ``body`` to each named participant of the study (through Prolific's messages)."""
    body = (body or "").strip()
    if not body:
        raise RemoteError("the message is empty")
    client = client or get_client()
    row = published(study)
    known = set(
        ProlificSubmission.objects.filter(prolific_study__study=study).values_list(
            "participant_id", flat=True
        )
    )
    unknown = [p for p in participants if p not in known]
    if unknown:
        raise RemoteError(
            f"not participants of study {study.name}: {', '.join(unknown)} (run `prolific sync`?)"
        )
    result = Result()
    for pid in participants:
        try:
            client.send_message(pid, row.prolific_id, body, study=study)
            result.lines.append(f"sent to {pid}")
        except ProlificError as exc:
            result.ok = False
            result.lines.append(f"FAILED {pid}: {exc}")
    return result


def status_lines(*, study: Study) -> list[str]:
    """The study's Prolific state as last synced (no call): studies, submissions, bonuses."""
    rows = ProlificStudy.objects.filter(study=study).order_by("created")
    if not rows:
        return [f"study {study.name} has never been published on Prolific"]
    out = [f"Mode: {mode_label()}"]
    for row in rows:
        c = row.currency
        out.append(
            f"{row.prolific_id or '(not created yet)'} [{row.get_state_display()}; Prolific: "
            f"{row.remote_status or '?'}]: {row.places} places, "
            f"{fees.show(fees.from_minor(row.reward), c)} for ~{row.estimated_minutes} min "
            f"(max {row.max_minutes}), last sync {row.synced or 'never'}"
        )
        states = Counter(row.submissions.values_list("status", flat=True))
        out.append(
            "  submissions: " + (", ".join(f"{s} {n}" for s, n in sorted(states.items())) or "none")
        )
        for bonus in row.bonuses.exclude(state=ProlificBonus.State.CONFIRMED):
            out.append(f"  bonus {bonus.pk}: {bonus.get_state_display()}")
    return out
