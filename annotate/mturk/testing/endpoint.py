"""An in-memory MTurk requester endpoint (JSON 1.1 over HTTP) for tests and local trials.

Speaks the protocol the real boto3 client speaks: ``POST /`` with ``X-Amz-Target:
MTurkRequesterServiceV20170117.<Operation>``, JSON in and out, timestamps as epoch seconds,
errors as HTTP 400 ``{"__type": "RequestError", "Message": …, "TurkErrorCode": …}``. It keeps the
rules our code depends on, on its own injectable ``clock``: a UniqueRequestToken answered as
already used for 24 hours and forgotten after (in any of MTurk's spellings, ``SPELLINGS``),
paging with NextToken, only Submitted work approved or rejected, auto-approval after
AutoApprovalDelayInSeconds, abandonment after the assignment's duration, no growth from <10 to
≥10 assignments. Faults: ``fail`` (an error answer) and ``drop`` (the connection closes without
an answer, before or after the call acted). A tiny worker site: ``GET /accept?hitId=…&workerId=…``
starts a HIT in our page the way MTurk frames it, and ``POST /mturk/externalSubmit`` submits it.
Nothing is signed or checked for credentials. The HTTP side is
:mod:`annotate.mturk.testing.transport`.

One concept over ~550 lines: MTurk's requester state machine, one short method per operation
sharing the same state, lock and clock; splitting it would scatter the rules it keeps.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from annotate.mturk.testing.transport import Dropped, FakeError, Handler

EXTERNAL_URL = re.compile(r"<ExternalURL>(.*?)</ExternalURL>", re.DOTALL)
DEFAULT_PAGE = 10
REVIEWED = ("Submitted", "Approved", "Rejected")
TOKEN_TTL_S = 24 * 3600  # "The unique token expires after 24 hours"
# How an already-used UniqueRequestToken is answered: by default HitAlreadyExists for a HIT
# and "already been processed" for a bonus or an extension; ``duplicate_spelling`` picks one.
SPELLINGS = ("HitAlreadyExists", "HITAlreadyExists", "used", "processed")


class FakeClock:
    """A clock that stands still until moved: ``FakeMTurk(clock=FakeClock())``, then
    ``advance(seconds)`` to let MTurk's hours pass in a test."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeMTurk:
    """The service state and its HTTP server (``port=0``: a free port; see ``url``)."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self.duplicate_spelling: str | None = None  # one of SPELLINGS, or each operation's own
        self.lock = threading.RLock()
        self.hit_types: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, dict[str, Any]] = {}
        self.assignments: dict[str, dict[str, Any]] = {}
        self.qualifications: dict[str, dict[str, Any]] = {}
        self.grants: dict[tuple[str, str], int] = {}
        self.bonuses: list[dict[str, Any]] = []
        self.gone: list[dict[str, Any]] = []  # returned or abandoned assignments
        self.tokens: dict[tuple[str, str], tuple[str, float]] = {}  # → (entity id, when)
        self.calls: list[str] = []
        self.failures: dict[str, list[FakeError]] = {}
        self.drops: dict[str, list[bool]] = {}  # operation → acts before dropping?
        self.balance = Decimal("10000.00")
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> FakeMTurk:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeMTurk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests (and the worker site) do ------------------------------------------------

    def accept(self, hit_id: str, worker_id: str, assignment_id: str | None = None) -> str:
        """A worker accepts a HIT: an Accepted assignment (not listed until submitted)."""
        with self.lock:
            self._tick()
            hit = self._hit(hit_id)
            if self._counts(hit)["NumberOfAssignmentsAvailable"] < 1:
                raise FakeError(
                    f"HIT {hit_id} has no assignment left", "AWS.MechanicalTurk.NoMoreAssignments"
                )
            for a in self.assignments.values():
                if a["HITId"] == hit_id and a["WorkerId"] == worker_id:
                    return a["AssignmentId"]
            now = self.clock()
            assignment_id = assignment_id or self._id("3A")
            self.assignments[assignment_id] = {
                "AssignmentId": assignment_id,
                "WorkerId": worker_id,
                "HITId": hit_id,
                "AssignmentStatus": "Accepted",
                "AcceptTime": now,
                "Deadline": now + hit["AssignmentDurationInSeconds"],
            }
            return assignment_id

    def submit(
        self,
        hit_id: str,
        assignment_id: str,
        worker_id: str,
        *,
        answer: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A worker's submitted assignment (accepted first if it was not)."""
        with self.lock:
            if assignment_id not in self.assignments:
                self.accept(hit_id, worker_id, assignment_id)
            a = self.assignments[assignment_id]
            hit = self._hit(hit_id)
            now = self.clock()
            fields = "".join(
                f"<Answer><QuestionIdentifier>{html.escape(k)}</QuestionIdentifier>"
                f"<FreeText>{html.escape(v)}</FreeText></Answer>"
                for k, v in (answer or {}).items()
            )
            a.update(
                AssignmentStatus="Submitted",
                SubmitTime=now,
                AutoApprovalTime=now + hit["AutoApprovalDelayInSeconds"],
                Answer=f"<QuestionFormAnswers>{fields}</QuestionFormAnswers>",
            )
            return dict(a)

    def return_assignment(self, assignment_id: str) -> None:
        """The worker returns an accepted assignment: MTurk forgets it and frees the slot."""
        with self.lock:
            a = self.assignments.pop(assignment_id)
            if a["AssignmentStatus"] != "Accepted":
                self.assignments[assignment_id] = a
                raise FakeError(f"assignment {assignment_id} is {a['AssignmentStatus']}")
            self.gone.append({**a, "AssignmentStatus": "Returned"})

    def fail(
        self,
        operation: str,
        *,
        kind: str = "ServiceFault",
        times: int = 1,
        message: str = "",
        code: str = "",
    ) -> None:
        """Make the next ``times`` calls of ``operation`` fail (ThrottlingException, …)."""
        status = 500 if kind == "ServiceFault" else 400
        text = message or {"ThrottlingException": "Rate exceeded"}.get(
            kind, "We are temporarily unable to process your request. Please retry."
        )
        with self.lock:
            self.failures.setdefault(operation, []).extend(
                FakeError(text, code, kind, status) for _ in range(times)
            )

    def drop(self, operation: str, *, act: bool, times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` close the connection without answering:
        after doing what was asked (``act``: the remote did it, the caller never heard) or
        before (it never happened)."""
        with self.lock:
            self.drops.setdefault(operation, []).extend([act] * times)

    def count(self, operation: str) -> int:
        """How many times ``operation`` was called (failed calls included)."""
        return self.calls.count(operation)

    # --- dispatch ---------------------------------------------------------------------------

    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(operation)
            self._tick()
            pending = self.failures.get(operation)
            if pending:
                raise pending.pop(0)
            drops = self.drops.get(operation)
            act_then_drop = drops.pop(0) if drops else None
            if act_then_drop is False:
                raise Dropped(operation)
            method: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(
                self, f"op_{operation}", None
            )
            if method is None:
                raise FakeError(
                    f"{operation} is not implemented here", kind="UnknownOperationException"
                )
            response = method(params)
            if act_then_drop:
                raise Dropped(operation)
            return response

    def _tick(self) -> None:
        """What MTurk's clock does by itself: Submitted work is approved after its auto-approval
        delay; an accepted assignment not submitted within its duration is abandoned."""
        now = self.clock()
        for a in list(self.assignments.values()):
            if a["AssignmentStatus"] == "Submitted" and a["AutoApprovalTime"] <= now:
                a.update(AssignmentStatus="Approved", ApprovalTime=a["AutoApprovalTime"])
                self.balance -= Decimal(self.hits[a["HITId"]]["Reward"])
            elif a["AssignmentStatus"] == "Accepted" and a["Deadline"] <= now:
                del self.assignments[a["AssignmentId"]]
                self.gone.append({**a, "AssignmentStatus": "Abandoned"})

    def _token_entity(self, kind: str, token: str | None) -> str | None:
        """The id a token produced within the last 24 hours of the clock, else None."""
        entry = self.tokens.get((kind, token or ""))
        if entry is None or self.clock() - entry[1] >= TOKEN_TTL_S:
            return None
        return entry[0]

    def _remember(self, kind: str, token: str | None, entity: str) -> None:
        if token:
            self.tokens[(kind, token)] = (entity, self.clock())

    def _duplicate(self, kind: str, token: str, entity: str) -> FakeError:
        """MTurk's answer to a token used already, in ``duplicate_spelling`` or the default."""
        spelling = self.duplicate_spelling or ("HitAlreadyExists" if kind == "hit" else "processed")
        ms = int(self.clock() * 1000)
        if spelling == "HitAlreadyExists":
            return FakeError(
                f"The HIT with ID {entity} already exists for UniqueRequestToken {token}. ({ms})",
                "AWS.MechanicalTurk.HitAlreadyExists",
            )
        if spelling == "HITAlreadyExists":
            return FakeError(
                f"There is already a HIT with ID {entity} for this UniqueRequestToken. ({ms})",
                "AWS.MechanicalTurk.HITAlreadyExists",
            )
        if spelling == "used":
            return FakeError(
                f"The value of the UniqueRequestToken {token} has already been used. ({ms})"
            )
        return FakeError(f'The idempotency token "{token}" has already been processed. ({ms})')

    # --- operations -------------------------------------------------------------------------

    def op_GetAccountBalance(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"AvailableBalance": f"{self.balance:.2f}", "OnHoldBalance": "0.00"}

    def op_CreateHITType(self, p: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(p, sort_keys=True)
        for type_id, t in self.hit_types.items():
            if t["_key"] == key:
                return {"HITTypeId": type_id}
        type_id = self._id("3T")
        self.hit_types[type_id] = {**p, "_key": key, "HITGroupId": self._id("3G")}
        return {"HITTypeId": type_id}

    def op_CreateHITWithHITType(self, p: dict[str, Any]) -> dict[str, Any]:
        t = self.hit_types.get(p.get("HITTypeId", ""))
        if t is None:
            raise FakeError(
                f"HITType {p.get('HITTypeId')} does not exist.",
                "AWS.MechanicalTurk.HITTypeDoesNotExist",
            )
        token = p.get("UniqueRequestToken")
        if (earlier := self._token_entity("hit", token)) is not None:
            raise self._duplicate("hit", token or "", earlier)
        now = self.clock()
        hit_id = self._id("3H")
        self.hits[hit_id] = {
            "HITId": hit_id,
            "HITTypeId": p["HITTypeId"],
            "HITGroupId": t["HITGroupId"],
            "CreationTime": now,
            "Title": t.get("Title", ""),
            "Description": t.get("Description", ""),
            "Question": p.get("Question", ""),
            "Keywords": t.get("Keywords", ""),
            "MaxAssignments": int(p.get("MaxAssignments", 1)),
            "Reward": t["Reward"],
            "AutoApprovalDelayInSeconds": t.get("AutoApprovalDelayInSeconds", 30 * 86400),
            "Expiration": now + float(p["LifetimeInSeconds"]),
            "AssignmentDurationInSeconds": t["AssignmentDurationInSeconds"],
            "RequesterAnnotation": p.get("RequesterAnnotation", ""),
            "QualificationRequirements": t.get("QualificationRequirements", []),
            "HITReviewStatus": "NotReviewed",
        }
        self._remember("hit", token, hit_id)
        return {"HIT": self._hit_out(self.hits[hit_id])}

    def op_GetHIT(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"HIT": self._hit_out(self._hit(p.get("HITId", "")))}

    def op_ListHITs(self, p: dict[str, Any]) -> dict[str, Any]:
        page, token = self._page(list(self.hits.values()), p)
        return {"NumResults": len(page), "HITs": [self._hit_out(h) for h in page], **token}

    def op_ListAssignmentsForHIT(self, p: dict[str, Any]) -> dict[str, Any]:
        self._hit(p.get("HITId", ""))
        statuses = p.get("AssignmentStatuses") or list(REVIEWED)
        rows = [
            dict(a)
            for a in self.assignments.values()
            if a["HITId"] == p["HITId"] and a["AssignmentStatus"] in statuses
        ]
        page, token = self._page(rows, p)
        return {"NumResults": len(page), "Assignments": page, **token}

    def op_ApproveAssignment(self, p: dict[str, Any]) -> dict[str, Any]:
        a = self._assignment(p.get("AssignmentId", ""))
        allowed = ("Submitted", "Rejected") if p.get("OverrideRejection") else ("Submitted",)
        if a["AssignmentStatus"] not in allowed:
            raise FakeError(
                f"This operation can be called with a status of: {', '.join(allowed)} "
                f"(assignment {a['AssignmentId']} is {a['AssignmentStatus']})",
                "AWS.MechanicalTurk.InvalidAssignmentState",
            )
        a.update(AssignmentStatus="Approved", ApprovalTime=self.clock())
        if p.get("RequesterFeedback"):
            a["RequesterFeedback"] = p["RequesterFeedback"]
        self.balance -= Decimal(self._hit(a["HITId"])["Reward"])
        return {}

    def op_RejectAssignment(self, p: dict[str, Any]) -> dict[str, Any]:
        a = self._assignment(p.get("AssignmentId", ""))
        if not p.get("RequesterFeedback"):
            raise FakeError("RequesterFeedback is required", "AWS.MechanicalTurk.MissingParameter")
        if a["AssignmentStatus"] != "Submitted":
            raise FakeError(
                "This operation can be called with a status of: Submitted",
                "AWS.MechanicalTurk.InvalidAssignmentState",
            )
        a.update(
            AssignmentStatus="Rejected",
            RejectionTime=self.clock(),
            RequesterFeedback=p["RequesterFeedback"],
        )
        return {}

    def op_GetAssignment(self, p: dict[str, Any]) -> dict[str, Any]:
        a = self._assignment(p.get("AssignmentId", ""))
        return {"Assignment": dict(a), "HIT": self._hit_out(self._hit(a["HITId"]))}

    def op_SendBonus(self, p: dict[str, Any]) -> dict[str, Any]:
        token = p.get("UniqueRequestToken")
        if (earlier := self._token_entity("bonus", token)) is not None:
            raise self._duplicate("bonus", token or "", earlier)
        a = self.assignments.get(p.get("AssignmentId", ""))
        if a is None or a["WorkerId"] != p.get("WorkerId") or a["AssignmentStatus"] not in REVIEWED:
            raise FakeError(
                f"Assignment {p.get('AssignmentId')} does not exist "
                f"for worker {p.get('WorkerId')}.",
                "AWS.MechanicalTurk.AssignmentDoesNotExist",
            )
        self.bonuses.append({**p, "Time": self.clock()})
        self.balance -= Decimal(p["BonusAmount"])
        self._remember("bonus", token, a["AssignmentId"])
        return {}

    def op_ListBonusPayments(self, p: dict[str, Any]) -> dict[str, Any]:
        if bool(p.get("HITId")) == bool(p.get("AssignmentId")):
            raise FakeError(
                "Exactly one of HITId and AssignmentId is required",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        rows = [
            {
                "WorkerId": b["WorkerId"],
                "BonusAmount": b["BonusAmount"],
                "AssignmentId": b["AssignmentId"],
                "Reason": b.get("Reason", ""),
                "GrantTime": b["Time"],
            }
            for b in self.bonuses
            if b["AssignmentId"] == p.get("AssignmentId")
            or self.assignments.get(b["AssignmentId"], {}).get("HITId") == p.get("HITId")
        ]
        page, token = self._page(rows, p)
        return {"NumResults": len(page), "BonusPayments": page, **token}

    def op_UpdateExpirationForHIT(self, p: dict[str, Any]) -> dict[str, Any]:
        self._hit(p.get("HITId", ""))["Expiration"] = float(p["ExpireAt"])
        return {}

    def op_CreateAdditionalAssignmentsForHIT(self, p: dict[str, Any]) -> dict[str, Any]:
        hit = self._hit(p.get("HITId", ""))
        token = p.get("UniqueRequestToken")
        if (earlier := self._token_entity("extend", token)) is not None:
            raise self._duplicate("extend", token or "", earlier)
        n = int(p.get("NumberOfAdditionalAssignments", 0))
        if n < 1:
            raise FakeError(
                "NumberOfAdditionalAssignments must be at least 1",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        if hit["MaxAssignments"] < 10 <= hit["MaxAssignments"] + n:
            raise FakeError(
                "HITs created with fewer than 10 assignments cannot be extended "
                "to have 10 or more.",
                "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease",
            )
        hit["MaxAssignments"] += n
        self._remember("extend", token, hit["HITId"])
        return {}

    def op_CreateQualificationType(self, p: dict[str, Any]) -> dict[str, Any]:
        if any(q["Name"] == p.get("Name") for q in self.qualifications.values()):
            raise FakeError(
                "You have already created a QualificationType with this name. A "
                "QualificationType's name must be unique among all of the QualificationTypes "
                "created by the same user.",
                "AWS.MechanicalTurk.QualificationTypeAlreadyExists",
            )
        type_id = self._id("3Q")
        self.qualifications[type_id] = {
            "QualificationTypeId": type_id,
            "CreationTime": self.clock(),
            "Name": p["Name"],
            "Description": p.get("Description", ""),
            "Keywords": p.get("Keywords", ""),
            "QualificationTypeStatus": p.get("QualificationTypeStatus", "Active"),
            "IsRequestable": True,
            "AutoGranted": bool(p.get("AutoGranted", False)),
        }
        return {"QualificationType": dict(self.qualifications[type_id])}

    def op_ListQualificationTypes(self, p: dict[str, Any]) -> dict[str, Any]:
        query = (p.get("Query") or "").lower()
        rows = [
            dict(q)
            for q in self.qualifications.values()
            if query in f"{q['Name']} {q['Description']} {q['Keywords']}".lower()
        ]
        page, token = self._page(rows, p)
        return {"NumResults": len(page), "QualificationTypes": page, **token}

    def op_AssociateQualificationWithWorker(self, p: dict[str, Any]) -> dict[str, Any]:
        type_id = p.get("QualificationTypeId", "")
        if type_id not in self.qualifications:
            raise FakeError(
                f"QualificationType {type_id} does not exist.",
                "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
            )
        self.grants[(type_id, p["WorkerId"])] = int(p.get("IntegerValue", 1))
        return {}

    # --- helpers ----------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):028d}"

    def _hit(self, hit_id: str) -> dict[str, Any]:
        if hit_id not in self.hits:
            raise FakeError(f"Hit {hit_id} does not exist.", "AWS.MechanicalTurk.HITDoesNotExist")
        return self.hits[hit_id]

    def _assignment(self, assignment_id: str) -> dict[str, Any]:
        a = self.assignments.get(assignment_id)
        if a is None or a["AssignmentStatus"] == "Accepted":
            raise FakeError(
                f"Assignment {assignment_id} does not exist.",
                "AWS.MechanicalTurk.AssignmentDoesNotExist",
            )
        return a

    def _counts(self, hit: dict[str, Any]) -> dict[str, int]:
        mine = [a for a in self.assignments.values() if a["HITId"] == hit["HITId"]]
        pending = sum(a["AssignmentStatus"] == "Accepted" for a in mine)
        completed = sum(a["AssignmentStatus"] in REVIEWED for a in mine)
        open_ = hit["Expiration"] > self.clock()
        available = max(0, hit["MaxAssignments"] - pending - completed) if open_ else 0
        return {
            "NumberOfAssignmentsPending": pending,
            "NumberOfAssignmentsAvailable": available,
            "NumberOfAssignmentsCompleted": completed,
        }

    def _hit_out(self, hit: dict[str, Any]) -> dict[str, Any]:
        counts = self._counts(hit)
        if counts["NumberOfAssignmentsAvailable"]:
            status = "Assignable"
        elif counts["NumberOfAssignmentsPending"]:
            status = "Unassignable"
        else:
            status = "Reviewable"
        return {**hit, **counts, "HITStatus": status}

    def _page(self, rows: list[dict[str, Any]], p: dict[str, Any]) -> tuple[list, dict[str, str]]:
        size = int(p.get("MaxResults") or DEFAULT_PAGE)
        start = int(base64.b64decode(p["NextToken"]).decode()) if p.get("NextToken") else 0
        page = rows[start : start + size]
        more = start + size < len(rows)
        return page, (
            {"NextToken": base64.b64encode(str(start + size).encode()).decode()} if more else {}
        )

    def external_url(self, hit_id: str, assignment_id: str, worker_id: str) -> str:
        """Where MTurk would frame the worker: the HIT's ExternalURL with MTurk's parameters."""
        match = EXTERNAL_URL.search(self._hit(hit_id)["Question"])
        if not match:
            raise FakeError(f"HIT {hit_id} has no ExternalQuestion")
        url = html.unescape(match.group(1).strip())
        query = urlencode(
            {
                "assignmentId": assignment_id,
                "hitId": hit_id,
                "turkSubmitTo": self.url,
                "workerId": worker_id,
            }
        )
        return f"{url}{'&' if '?' in url else '?'}{query}"
