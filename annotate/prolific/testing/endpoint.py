"""An in-memory Prolific (researcher API v1 and participant site) for tests and local trials.

Speaks Prolific's documented JSON protocol to our real ``requests`` client: studies (create,
list with paging and a state filter, update, transition), submissions (list, get, approve or
reject, bulk approve), two-step bonuses (set up, then pay: paying again pays again, as on
Prolific), messages, and ``submission.status.change`` webhooks signed the documented way. A
participant starts at ``/studies/<id>/start?PROLIFIC_PID=…`` (redirected to the study URL with
its placeholders filled) and finishes at ``/submissions/complete?cc=…`` or ``/submissions/return``.
Crash tests inject failures (``fail``), lost answers (``drop_after``) and pauses (``hold``).
Every time comes from ``clock``. The HTTP side is :mod:`annotate.prolific.testing.transport`.

One concept over ~700 lines: Prolific's state machine and the validation it applies, one short
method per operation sharing the same state and lock; splitting it would scatter its rules.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from annotate.prolific.testing.transport import (
    API_ROOT,
    SESSION_COOKIE,
    Call,
    Faults,
    Handler,
    Hold,
    HookSender,
    Page,
    Plan,
    ProlificError,
    Rule,
)

ACTIVE, AWAITING, APPROVED, REJECTED = "ACTIVE", "AWAITING REVIEW", "APPROVED", "REJECTED"
RETURNED, TIMED_OUT = "RETURNED", "TIMED-OUT"
UNPUBLISHED, PAUSED, COMPLETED = "UNPUBLISHED", "PAUSED", "COMPLETED"
TAKING_PLACES = (ACTIVE, AWAITING, APPROVED, REJECTED)
STUDY_MOVES = {  # action → (from, to); STOP ends in AWAITING REVIEW or COMPLETED (see _settle)
    "PUBLISH": ((UNPUBLISHED,), ACTIVE),
    "PAUSE": ((ACTIVE,), PAUSED),
    "START": ((PAUSED,), ACTIVE),
    "STOP": ((ACTIVE, PAUSED), AWAITING),
}
REJECTION_CATEGORIES = (
    "TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL", "FAILED_CHECK",
    "LOW_EFFORT", "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA", "UNSUPP_DEVICE", "OTHER",
)  # fmt: skip
CODE_TYPES = (
    "COMPLETED", "FAILED_ATTENTION_CHECK", "FOLLOW_UP_STUDY", "GIVE_BONUS",
    "INCOMPATIBLE_DEVICE", "NO_CONSENT", "OTHER", "FIXED_SCREENOUT",
)  # fmt: skip
CODE_ACTIONS = (
    "MANUALLY_REVIEW", "AUTOMATICALLY_APPROVE", "REQUEST_RETURN",
    "ADD_TO_PARTICIPANT_GROUP", "REMOVE_FROM_PARTICIPANT_GROUP",
)  # fmt: skip
ID_OPTIONS = ("url_parameters", "question", "not_required")
DEVICES = ("desktop", "mobile", "tablet")
REQUIRED = (
    "name", "description", "external_study_url", "prolific_id_option", "completion_codes",
    "total_available_places", "estimated_completion_time", "reward",
)  # fmt: skip
STUDY_FIELDS = (
    *REQUIRED,
    *("internal_name", "maximum_allowed_time", "device_compatibility", "filters", "currency_code"),
)
LIVE_FIELDS = ("internal_name", "total_available_places")  # all a published study may change
MIN_REJECTION_MESSAGE = 100


class FakeProlific:
    """Prolific's state and its HTTP server (``port=0``: a free port; see ``url``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        hook_url: str | None = None,
        hook_secret: str = "",
        page_size: int = 20,
        bonus_delay_s: float = 120.0,
        bonus_fee_rate: float = 0.333,
    ) -> None:
        self.clock, self.hook_url, self.hook_secret = clock, hook_url, hook_secret
        self.page_size, self.bonus_delay_s, self.bonus_fee_rate = (
            page_size,
            bonus_delay_s,
            bonus_fee_rate,
        )
        self.balance = 1_000_000  # the workspace's, in minor units; bonus payments draw on it
        self.lock = threading.RLock()
        self.studies: dict[str, dict[str, Any]] = {}
        self.submissions: dict[str, dict[str, Any]] = {}
        self.bonuses: dict[str, dict[str, Any]] = {}
        self.payments: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.faults = Faults()
        self.hooks = HookSender(clock)
        self._ids = itertools.count(1)
        self.user_id = self._id(6)
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProlific:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held requests, stop serving, and stop the webhook sender."""
        self.faults.release_all()
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()
        self.hooks.close()

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Every webhook POST attempted: payload, exact body, headers, status or error."""
        return self.hooks.deliveries

    def __enter__(self) -> FakeProlific:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test hooks -------------------------------------------------------------------------

    def fail(self, pattern: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests whose ``"METHOD /path"`` matches ``pattern`` (a
        regex, searched) with ``status``, without acting; 429 comes with ``Retry-After: 1``."""
        self.faults.add(Rule("fail", re.compile(pattern), times, status=status))

    def drop_after(self, pattern: str, times: int = 1) -> None:
        """Act on the next ``times`` matching requests, then close the connection unanswered."""
        self.faults.add(Rule("drop", re.compile(pattern), times))

    def hold(self, pattern: str, *, before: bool) -> Hold:
        """Pause the next matching request before acting (``before=True``) or after acting but
        before answering, until the returned handle is released."""
        hold = Hold(before)
        self.faults.add(Rule("hold", re.compile(pattern), 1, hold=hold))
        return hold

    def count(self, pattern: str) -> int:
        """How many API calls matched ``pattern`` in ``"METHOD /path"`` (failed ones included)."""
        with self.lock:
            return sum(bool(re.search(pattern, f"{m} {p}")) for m, p in self.calls)

    def wait_for_deliveries(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until ``n`` webhook deliveries were attempted; False on timeout."""
        return self.hooks.wait(n, timeout)

    def intercept(self, method: str, path: str) -> Plan:
        """Record an API call; what the injected rules make of it."""
        if path.startswith(API_ROOT):
            with self.lock:
                self.calls.append((method, path))
        return self.faults.take(f"{method} {path}")

    # --- API operations (called by the transport under the lock) ---------------------------

    def api(self, name: str, call: Call) -> Any:
        with self.lock:
            self._expire()
            operation: Callable[[Call], Any] = getattr(self, f"api_{name}")
            return operation(call)

    def api_users_me(self, call: Call) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "email": "researcher@fake-prolific.invalid",
            "name": "Fake Researcher",
            "currency_code": "GBP",
            "balance": self.balance,
            "available_balance": self.balance,
        }

    def api_list_studies(self, call: Call) -> dict[str, Any]:
        rows = list(self.studies.values())
        if call.query.get("state"):  # Prolific's form: "ACTIVE" or "(UNPUBLISHED|ACTIVE)"
            wanted = {s.strip() for s in call.query["state"].strip("()").split("|")}
            rows = [s for s in rows if s["status"] in wanted]
        return self._page([self._study_summary(s) for s in rows], call)

    def api_create_study(self, call: Call) -> dict[str, Any]:
        fields = self._clean_study(self._body(call))
        study_id = self._id(1)  # no dedupe by internal_name: Prolific does not either
        self.studies[study_id] = {
            "id": study_id,
            **fields,
            "status": UNPUBLISHED,
            "date_created": self.clock(),
            "published_at": None,
        }
        return self._study_out(self.studies[study_id])

    def api_get_study(self, call: Call) -> dict[str, Any]:
        return self._study_out(self._study(call.params["study_id"]))

    def api_update_study(self, call: Call) -> dict[str, Any]:
        study = self._study(call.params["study_id"])
        patch = {k: v for k, v in self._body(call).items() if k in STUDY_FIELDS}
        if study["status"] != UNPUBLISHED:
            locked = [k for k, v in patch.items() if k not in LIVE_FIELDS and v != study[k]]
            if locked:
                message = "This field cannot be changed once the study is published."
                raise ProlificError(400, {k: [message] for k in locked})
        fields = self._clean_study({**{k: study[k] for k in STUDY_FIELDS}, **patch})
        taken = self._taken(study)
        if fields["total_available_places"] < taken:
            message = f"Cannot be fewer than the {taken} places already taken."
            raise ProlificError(400, {"total_available_places": [message]})
        study.update(fields)
        self._settle(study)
        return self._study_out(study)

    def api_transition_study(self, call: Call) -> dict[str, Any]:
        study = self._study(call.params["study_id"])
        action = self._body(call).get("action")
        if action not in STUDY_MOVES:
            raise ProlificError(400, {"action": [f"Must be one of {', '.join(STUDY_MOVES)}."]})
        sources, target = STUDY_MOVES[action]
        if study["status"] not in sources:
            raise ProlificError(400, f"Cannot {action} a study that is {study['status']}.")
        study["status"] = target
        if action == "PUBLISH":
            study["published_at"] = self.clock()
        if action == "STOP" and not any(s["status"] == AWAITING for s in self._subs(study)):
            study["status"] = COMPLETED
        return self._study_out(study)

    def api_list_submissions(self, call: Call) -> dict[str, Any]:
        study = self._study(call.params["study_id"])
        return self._page([self._submission_short(s) for s in self._subs(study)], call)

    def api_get_submission(self, call: Call) -> dict[str, Any]:
        return self._submission_out(self._submission(call.params["submission_id"]))

    def api_transition_submission(self, call: Call) -> dict[str, Any]:
        sub = self._submission(call.params["submission_id"])
        body = self._body(call)
        action = body.get("action")
        if action not in ("APPROVE", "REJECT"):
            raise ProlificError(400, {"action": ["Must be one of APPROVE, REJECT."]})
        if action == "REJECT":
            errors: dict[str, list[str]] = {}
            message = body.get("message")
            if not isinstance(message, str) or len(message) < MIN_REJECTION_MESSAGE:
                errors["message"] = [f"Must be at least {MIN_REJECTION_MESSAGE} characters long."]
            if body.get("rejection_category") not in REJECTION_CATEGORIES:
                errors["rejection_category"] = [
                    f"Must be one of {', '.join(REJECTION_CATEGORIES)}."
                ]
            if errors:
                raise ProlificError(400, errors)
        target = APPROVED if action == "APPROVE" else REJECTED
        if sub["status"] == target:
            return self._submission_out(sub)  # "idempotent: the second request is ignored"
        if sub["status"] != AWAITING:
            raise ProlificError(
                400,
                f"Submission {sub['id']} is {sub['status']}: only AWAITING REVIEW submissions "
                "can be approved or rejected.",
            )
        if action == "REJECT":
            sub["rejection"] = {k: body[k] for k in ("message", "rejection_category")}
        self._set_status(sub, target)
        return self._submission_out(sub)

    def api_bulk_approve(self, call: Call) -> str:
        body = self._body(call)
        study_id = body.get("study_id")
        key = "submission_ids" if "submission_ids" in body else "participant_ids"
        ids = body.get(key)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            message = "Provide submission_ids, or study_id and participant_ids (non-empty)."
            raise ProlificError(400, {key: [message]})
        if key == "participant_ids" and not study_id:
            raise ProlificError(400, {"study_id": ["Required with participant_ids."]})
        if study_id is not None and study_id not in self.studies:
            raise ProlificError(400, {"study_id": [f"Study {study_id} does not exist."]})
        found: list[dict[str, Any]] = []
        for ident in ids:
            if key == "submission_ids":
                sub = self.submissions.get(ident)
                subs = [sub] if sub and study_id in (None, sub["study_id"]) else []
            else:
                subs = [
                    s
                    for s in self._subs(self.studies[str(study_id)])
                    if s["participant_id"] == ident
                ]
            found.extend(subs)
            if not subs:
                raise ProlificError(400, {key: [f"{ident} is not a submission of this study."]})
        for sub in found:
            if sub["status"] == AWAITING:  # APPROVED ones are skipped; nothing else is approved
                self._set_status(sub, APPROVED)
        return "The request to bulk approve has been made successfully."

    def api_set_up_bonuses(self, call: Call) -> dict[str, Any]:
        body = self._body(call)
        study = self.studies.get(body.get("study_id") or "")
        if study is None:
            raise ProlificError(
                400, {"study_id": [f"Study {body.get('study_id')} does not exist."]}
            )
        text = body.get("csv_bonuses")
        if not isinstance(text, str) or not text.strip():
            raise ProlificError(400, {"csv_bonuses": ["This field is required."]})
        rows: list[tuple[str, int]] = []
        bad_ids: list[str] = []
        bad_lines: list[str] = []
        for line in filter(None, (raw.strip() for raw in text.splitlines())):
            ident, _, text_amount = (part.strip() for part in line.partition(","))
            cents, sub = _minor_units(text_amount), self._in_study(study, ident)
            if cents is None:
                bad_lines.append(line)
            elif sub is None:
                bad_ids.append(ident)
            else:
                rows.append((sub["id"], cents))
        if bad_lines or bad_ids:
            errors = [f"Invalid line (need <id>,<amount>): {line}" for line in bad_lines]
            if bad_ids:
                errors.append(f"Not in study {study['id']}: {', '.join(bad_ids)}")
            raise ProlificError(400, {"csv_bonuses": errors})
        amount = sum(cents for _, cents in rows)
        fees = int((amount * Decimal(str(self.bonus_fee_rate))).quantize(Decimal(1), ROUND_HALF_UP))
        bonus_id = self._id(4)
        self.bonuses[bonus_id] = {
            "id": bonus_id,
            "study": study["id"],
            "amount": amount,
            "fees": fees,
            "vat": 0,
            "total_amount": amount + fees,
            "rows": rows,
        }
        return {k: v for k, v in self.bonuses[bonus_id].items() if k != "rows"}

    def api_pay_bonuses(self, call: Call) -> str:
        bonus = self.bonuses.get(call.params["bonus_id"])
        if bonus is None:
            raise ProlificError(404, f"Bulk bonus payment {call.params['bonus_id']} not found.")
        now = self.clock()  # not idempotent, like Prolific: every call pays again
        for sub_id, cents in bonus["rows"]:
            self.submissions[sub_id]["bonuses"].append((cents, now + self.bonus_delay_s))
        self.balance -= bonus["total_amount"]
        self.payments.append(
            {
                "bonus_id": bonus["id"],
                "study": bonus["study"],
                "amount": bonus["amount"],
                "total_amount": bonus["total_amount"],
                "rows": list(bonus["rows"]),
                "paid_at": now,
            }
        )
        return "Successfully received bonus payments request; they will be paid asynchronously."

    def api_send_message(self, call: Call) -> None:
        body = self._body(call)
        missing = [k for k in ("recipient_id", "study_id", "body") if not _text(body.get(k))]
        if missing:
            raise ProlificError(400, {k: ["This field is required."] for k in missing})
        fields = {k: body[k] for k in ("recipient_id", "study_id", "body")}
        self.messages.append({**fields, "sent_at": self.clock()})

    # --- the participant site ---------------------------------------------------------------

    def participant_start(self, study_id: str, participant_id: str | None) -> Page:
        """Take a place: an ACTIVE submission, a session cookie, a redirect to the study URL."""
        with self.lock:
            self._expire()
            study = self.studies.get(study_id)
            if study is None:
                raise ProlificError(404, f"There is no study {study_id}.")
            if study["status"] != ACTIVE:
                raise ProlificError(409, f"This study is not open ({study['status']}).")
            if self._taken(study) >= study["total_available_places"]:
                raise ProlificError(409, "All places in this study are taken.")
            pid = participant_id or self._id(5)
            if any(s["participant_id"] == pid for s in self._subs(study)):
                raise ProlificError(409, f"Participant {pid} already took part in this study.")
            sub_id = self._id(2)
            sub = {
                "id": sub_id,
                "study_id": study_id,
                "participant_id": pid,
                "status": ACTIVE,
                "started_at": self.clock(),
                "completed_at": None,
                "study_code": None,
                "bonuses": [],  # (amount in minor units, visible from) per payment
                "rejection": None,
            }
            self.submissions[sub_id] = sub
            self._notify(sub)
            url = study["external_study_url"]
            for name, value in (
                ("PROLIFIC_PID", pid),
                ("STUDY_ID", study_id),
                ("SESSION_ID", sub_id),
            ):
                url = url.replace("{{%" + name + "%}}", quote(value, safe=""))
        cookie = f"{SESSION_COOKIE}={sub_id}; Path=/"
        return Page(
            302, "Redirecting to the study.", ACTIVE, {"Location": url, "Set-Cookie": cookie}
        )

    def participant_complete(self, session: str | None, code: str) -> Page:
        """Come back with a completion code: COMPLETED-type and other codes finish the
        submission, a NO_CONSENT code returns it, an unknown code changes nothing."""
        with self.lock:
            self._expire()
            sub = self._session(session)
            codes = self.studies[sub["study_id"]]["completion_codes"]
            match = next((c for c in codes if c["code"] == code), None)
            if match is None:
                return Page(
                    400, f"The completion code {code!r} is not valid for this study.", ACTIVE
                )
            sub["study_code"] = code
            if match["code_type"] == "NO_CONSENT":
                self._set_status(sub, RETURNED)
                return Page(200, "You returned this study (no consent).", RETURNED)
            sub["completed_at"] = self.clock()
            self._set_status(sub, AWAITING)
            if any(a.get("action") == "AUTOMATICALLY_APPROVE" for a in match["actions"]):
                self._set_status(sub, APPROVED)
            return Page(200, "Thank you: your submission was recorded.", sub["status"])

    def participant_return(self, session: str | None) -> Page:
        """Give the place back: the ACTIVE submission becomes RETURNED."""
        with self.lock:
            self._expire()
            sub = self._session(session)
            self._set_status(sub, RETURNED)
            return Page(200, "You returned this study.", RETURNED)

    # --- rules kept across operations -------------------------------------------------------

    def _set_status(self, sub: dict[str, Any], status: str) -> None:
        sub["status"] = status
        self._notify(sub)
        self._settle(self.studies[sub["study_id"]])

    def _settle(self, study: dict[str, Any]) -> None:
        """Prolific's own study moves: full with nobody working → review; reviewed → done."""
        subs = self._subs(study)
        working = any(s["status"] == ACTIVE for s in subs)
        waiting = any(s["status"] == AWAITING for s in subs)
        full = self._taken(study) >= study["total_available_places"]
        if study["status"] == ACTIVE and not (full and not working):
            return
        if study["status"] in (ACTIVE, AWAITING, COMPLETED):
            if waiting:
                study["status"] = AWAITING
            elif not working:
                study["status"] = COMPLETED

    def _expire(self) -> None:
        """Time out ACTIVE submissions older than their study's maximum allowed time."""
        now = self.clock()
        for sub in list(self.submissions.values()):
            study = self.studies[sub["study_id"]]
            if sub["status"] == ACTIVE and now - sub["started_at"] > self._max_minutes(study) * 60:
                self._set_status(sub, TIMED_OUT)

    def _notify(self, sub: dict[str, Any]) -> None:
        """Queue a ``submission.status.change`` webhook (sent by a background thread)."""
        if not self.hook_url:
            return
        payload = {
            "event_type": "submission.status.change",
            "resource_id": sub["id"],
            "status": sub["status"],
            "study_id": sub["study_id"],
            "participant_id": sub["participant_id"],
        }
        self.hooks.send(self.hook_url, self.hook_secret or "", payload, event_id=self._id(7))

    # --- helpers ----------------------------------------------------------------------------

    def _id(self, kind: int) -> str:
        """A 24-hex-digit id like Prolific's; the first digit keeps kinds apart."""
        return f"{kind}{next(self._ids):023x}"

    def _body(self, call: Call) -> dict[str, Any]:
        if not isinstance(call.body, dict):
            raise ProlificError(400, "Expected a JSON object.")
        return call.body

    def _study(self, study_id: str) -> dict[str, Any]:
        if study_id not in self.studies:
            raise ProlificError(404, f"Study {study_id} not found.")
        return self.studies[study_id]

    def _submission(self, submission_id: str) -> dict[str, Any]:
        if submission_id not in self.submissions:
            raise ProlificError(404, f"Submission {submission_id} not found.")
        return self.submissions[submission_id]

    def _session(self, session: str | None) -> dict[str, Any]:
        if not session:
            raise ProlificError(400, "No study session: start the study first.")
        sub = self._submission(session)
        if sub["status"] != ACTIVE:
            raise ProlificError(409, f"This submission is already {sub['status']}.")
        return sub

    def _subs(self, study: dict[str, Any]) -> list[dict[str, Any]]:
        return [s for s in self.submissions.values() if s["study_id"] == study["id"]]

    def _in_study(self, study: dict[str, Any], ident: str) -> dict[str, Any] | None:
        """The study's submission with this submission id or participant id."""
        subs = self._subs(study)
        return next((s for s in subs if ident in (s["id"], s["participant_id"])), None)

    def _taken(self, study: dict[str, Any]) -> int:
        return sum(s["status"] in TAKING_PLACES for s in self._subs(study))

    def _max_minutes(self, study: dict[str, Any]) -> int:
        return study["maximum_allowed_time"] or 3 * study["estimated_completion_time"] + 2

    def _clean_study(self, data: dict[str, Any]) -> dict[str, Any]:
        """The study fields of ``data``, validated like Prolific (400, detail per field)."""
        errors: dict[str, list[str]] = {}
        for name in REQUIRED:
            if data.get(name) is None or data.get(name) in ("", []):
                errors.setdefault(name, []).append("This field is required.")
        for name, message in _field_errors(data):
            errors.setdefault(name, []).append(message)
        if errors:
            raise ProlificError(400, errors)
        return {name: data.get(name) for name in STUDY_FIELDS} | {
            "device_compatibility": data.get("device_compatibility") or [],
            "filters": data.get("filters") or [],
            "currency_code": data.get("currency_code") or "GBP",
        }

    def _page(self, rows: list[dict[str, Any]], call: Call) -> dict[str, Any]:
        """One page of ``rows`` with HAL-style ``_links`` (absolute URLs) and ``meta.count``."""
        size = _natural(call.query.get("page_size")) or self.page_size
        page = _natural(call.query.get("page", "1"))
        last = max(1, -(-len(rows) // size))
        if page is None or page > last:
            raise ProlificError(404, "Invalid page.")

        def link(n: int | None) -> dict[str, str | None]:
            query = urlencode({**call.query, "page": n})
            return {"href": f"{call.base}{call.path}?{query}" if n else None}

        return {
            "results": rows[(page - 1) * size : page * size],
            "_links": {
                "self": link(page),
                "next": link(page + 1 if page < last else None),
                "previous": link(page - 1 if page > 1 else None),
                "last": link(last),
            },
            "meta": {"count": len(rows)},
        }

    def _study_summary(self, study: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "name", "internal_name", "status", "total_available_places", "reward")
        return {k: study[k] for k in keys} | {
            "places_taken": self._taken(study),
            "number_of_submissions": len(self._subs(study)),
            "date_created": _iso(study["date_created"]),
            "published_at": _iso(study["published_at"]),
            "study_type": "SINGLE",
        }

    def _study_out(self, study: dict[str, Any]) -> dict[str, Any]:
        return (
            {"id": study["id"]}
            | {k: study[k] for k in STUDY_FIELDS}
            | self._study_summary(study)
            | {"maximum_allowed_time": self._max_minutes(study)}
        )

    def _submission_short(self, sub: dict[str, Any]) -> dict[str, Any]:
        done = sub["completed_at"]
        return {
            "id": sub["id"],
            "study_id": sub["study_id"],
            "participant_id": sub["participant_id"],
            "status": sub["status"],
            "started_at": _iso(sub["started_at"]),
            "completed_at": _iso(done),
            "study_code": sub["study_code"],
            "time_taken": None if done is None else round(done - sub["started_at"]),
            "is_complete": done is not None,
            "has_siblings": False,
            "return_requested": None,
        }

    def _submission_out(self, sub: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        return self._submission_short(sub) | {
            "participant": sub["participant_id"],  # the single-submission view's names
            "entered_code": sub["study_code"],
            "bonus_payments": [cents for cents, visible in sub["bonuses"] if visible <= now],
        }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _natural(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _minor_units(amount: str) -> int | None:
    """``"1.50"`` (major units, at most 2 decimals, positive) → 150; anything else → None."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    cents = value * 100
    return int(cents) if cents > 0 and cents == cents.to_integral_value() else None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _field_errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each invalid field present in ``data``."""
    out: list[tuple[str, str]] = []
    for name in ("name", "description", "internal_name"):
        if data.get(name) is not None and not isinstance(data[name], str):
            out.append((name, "Must be a string."))
    url = data.get("external_study_url")
    if url and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")):
        out.append(("external_study_url", "Enter a valid URL."))
    if data.get("prolific_id_option") and data["prolific_id_option"] not in ID_OPTIONS:
        out.append(("prolific_id_option", f"Must be one of {', '.join(ID_OPTIONS)}."))
    for name in ("total_available_places", "estimated_completion_time", "reward"):
        if data.get(name) is not None and not _positive_int(data[name]):
            out.append((name, "Must be an integer of at least 1."))
    longest, estimate = data.get("maximum_allowed_time"), data.get("estimated_completion_time")
    if longest is not None and not (
        _positive_int(longest) and (not _positive_int(estimate) or longest >= estimate)
    ):
        out.append(("maximum_allowed_time", "Must be an integer, at least the estimated time."))
    devices = data.get("device_compatibility")
    if devices is not None and (not isinstance(devices, list) or set(devices) - set(DEVICES)):
        out.append(("device_compatibility", f"Must be a list of {', '.join(DEVICES)}."))
    currency = data.get("currency_code")
    if currency is not None and not (
        isinstance(currency, str) and re.fullmatch("[A-Z]{3}", currency)
    ):
        out.append(("currency_code", "Must be a three-letter currency code."))
    out += [("completion_codes", m) for m in _code_errors(data.get("completion_codes"))]
    out += [("filters", m) for m in _filter_errors(data.get("filters"))]
    return out


def _code_errors(codes: Any) -> list[str]:
    if codes in (None, []):
        return []  # reported as required
    if not isinstance(codes, list):
        return ["Must be a list of completion codes."]
    out, seen = [], set()
    for item in codes:
        if not isinstance(item, dict) or not _text(item.get("code")):
            out.append(f"Each completion code needs a code: {json.dumps(item)}")
            continue
        code, actions = item["code"], item.get("actions")
        if code in seen:
            out.append(f"Code {code} is not unique within the study.")
        seen.add(code)
        if item.get("code_type") not in CODE_TYPES:
            out.append(f"Code {code}: code_type must be one of {', '.join(CODE_TYPES)}.")
        if not isinstance(actions, list) or any(
            not isinstance(a, dict) or a.get("action") not in CODE_ACTIONS for a in actions
        ):
            out.append(
                f"Code {code}: actions must be a list of {{'action': one of {CODE_ACTIONS}}}."
            )
        elif {"MANUALLY_REVIEW", "AUTOMATICALLY_APPROVE"} <= {a["action"] for a in actions}:
            out.append(
                f"Code {code}: MANUALLY_REVIEW and AUTOMATICALLY_APPROVE exclude each other."
            )
    return out


def _filter_errors(filters: Any) -> list[str]:
    if filters is None:
        return []
    if not isinstance(filters, list):
        return ["Must be a list of filters."]
    out = []
    for item in filters:
        ok = isinstance(item, dict) and _text(item.get("filter_id"))
        if ok:
            rng, values = item.get("selected_range"), item.get("selected_values")
            ok = (rng is None) != (values is None) and (
                (isinstance(rng, dict) and bool({"lower", "upper"} & rng.keys()))
                or (isinstance(values, list) and bool(values))
            )
        if not ok:
            out.append(f"Needs filter_id and selected_values or selected_range: {json.dumps(item)}")
    return out
