"""The in-memory Prolific driven over HTTP with plain ``requests``: token auth, studies (create,
paging, filter, transitions, update), the participant site (start, complete, return, time-out),
review (approve, reject, bulk approve), two-step bonuses, signed webhooks, and the crash hooks
(fail, drop_after, hold). No database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from annotate.prolific.testing import FakeProlific

LONG_REASON = (
    "You answered every question in under a second, which our instructions ruled out. " * 2
)
START = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock):
    with FakeProlific(clock=clock) as endpoint:
        yield endpoint


@pytest.fixture
def api(fake):
    """A researcher's session: the token header, URLs relative to /api/v1/."""
    session = Session(fake.url + "/api/v1/")
    session.headers["Authorization"] = "Token fake"
    return session


class Session(requests.Session):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base, self.trust_env = base, False

    def request(self, method, url, *args, **kwargs):  # noqa: ANN001 — requests' signature
        return super().request(method, url if "://" in url else self.base + url, *args, **kwargs)


def study_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Which digit is this?",
        "internal_name": "blindspot-study-1",
        "description": "Label 20 images.",
        "external_study_url": (
            "https://blindspot.invalid/s/k/?pid={{%PROLIFIC_PID%}}&study={{%STUDY_ID%}}"
            "&session={{%SESSION_ID%}}"
        ),
        "prolific_id_option": "url_parameters",
        "completion_codes": [
            {"code": "DONE1", "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]},
            {"code": "NOPE1", "code_type": "NO_CONSENT", "actions": []},
        ],
        "total_available_places": 3,
        "estimated_completion_time": 5,
        "reward": 125,
        "device_compatibility": ["desktop"],
        "filters": [{"filter_id": "age", "selected_range": {"lower": 18, "upper": 99}}],
    }
    return body | overrides


def create(api, **overrides: Any) -> dict[str, Any]:
    response = api.post("studies/", json=study_body(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def published(api, **overrides: Any) -> dict[str, Any]:
    study = create(api, **overrides)
    response = api.post(f"studies/{study['id']}/transition/", json={"action": "PUBLISH"})
    assert response.json()["status"] == "ACTIVE"
    return response.json()


def start(fake, study_id: str, pid: str | None = "P1") -> tuple[requests.Session, str]:
    """A participant's browser after starting: its session and the submission id."""
    browser = Session(fake.url)
    query = f"?PROLIFIC_PID={pid}" if pid else ""
    response = browser.get(f"/studies/{study_id}/start{query}", allow_redirects=False)
    assert response.status_code == 302, response.text
    return browser, browser.cookies["fake_prolific_session"]


def finished(fake, study_id: str, pid: str) -> str:
    """A submission AWAITING REVIEW: started and completed with the right code."""
    browser, submission_id = start(fake, study_id, pid)
    assert browser.get("/submissions/complete?cc=DONE1").status_code == 200
    return submission_id


def submission(api, submission_id: str) -> dict[str, Any]:
    return api.get(f"submissions/{submission_id}/").json()


# --- auth and studies ------------------------------------------------------------------------


def test_every_api_call_needs_a_token_and_errors_use_the_envelope(fake, api):
    bare = Session(fake.url + "/api/v1/")
    for headers in ({}, {"Authorization": "Token "}, {"Authorization": "Bearer abc"}):
        response = bare.get("users/me/", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["status"] == 401 and error["error_code"] == 140401
        assert error["title"] == "Unauthorized" and isinstance(error["detail"], str)
    me = api.get("users/me/")
    assert me.status_code == 200 and me.json()["currency_code"] == "GBP"
    assert {"id", "email", "name", "balance"} <= me.json().keys()
    assert api.get("studies/ffffffffffffffffffffffff/").status_code == 404
    assert fake.calls[0] == ("GET", "/api/v1/users/me/")


def test_creating_a_study_validates_each_field_and_echoes_a_draft(api, clock):
    response = api.post("studies/", json=study_body(reward=0, completion_codes=[], name=None))
    assert response.status_code == 400
    detail = response.json()["error"]["detail"]
    assert set(detail) == {"reward", "completion_codes", "name"}
    bad_code = [{"code": "X", "code_type": "MAYBE", "actions": [{"action": "MANUALLY_REVIEW"}]}]
    assert (
        "completion_codes"
        in api.post("studies/", json=study_body(completion_codes=bad_code)).json()["error"][
            "detail"
        ]
    )

    study = create(api)
    assert study["status"] == "UNPUBLISHED" and study["places_taken"] == 0
    assert len(study["id"]) == 24 and int(study["id"], 16) >= 0
    assert study["date_created"].endswith("Z") and study["date_created"].startswith("2027-01-15")
    assert study["maximum_allowed_time"] == 3 * 5 + 2 and study["currency_code"] == "GBP"
    assert study["filters"] == study_body()["filters"] and study["reward"] == 125
    again = create(api)  # the same internal name again is allowed, as on Prolific
    assert again["id"] != study["id"] and again["internal_name"] == study["internal_name"]


def test_the_study_list_pages_with_absolute_links(fake, api):
    fake.page_size = 2
    made = [create(api, internal_name=f"s{i}")["id"] for i in range(5)]
    seen, url, pages = [], "studies/", 0
    while url:
        page = api.get(url).json()
        assert page["meta"]["count"] == 5
        seen += [s["id"] for s in page["results"]]
        url, pages = page["_links"]["next"]["href"], pages + 1
        assert url is None or url.startswith(fake.url)
    assert seen == made and pages == 3
    assert page["_links"]["previous"]["href"].endswith("page=2")
    assert api.get("studies/?page=4").status_code == 404


def test_the_study_list_filters_by_state(api):
    draft = create(api)["id"]
    live = published(api)["id"]
    active = api.get("studies/", params={"state": "ACTIVE"}).json()["results"]
    assert [s["id"] for s in active] == [live]
    both = api.get("studies/", params={"state": "(UNPUBLISHED|ACTIVE)"}).json()["results"]
    assert {s["id"] for s in both} == {draft, live}


def test_study_transitions_follow_prolifics_states(api):
    study_id = create(api)["id"]

    def move(action: str) -> requests.Response:
        return api.post(f"studies/{study_id}/transition/", json={"action": action})

    assert move("PAUSE").status_code == 400
    assert move("PUBLISH").json()["status"] == "ACTIVE"
    refused = move("PUBLISH")
    assert refused.status_code == 400 and "ACTIVE" in refused.json()["error"]["detail"]
    assert move("PAUSE").json()["status"] == "PAUSED"
    assert move("START").json()["status"] == "ACTIVE"
    assert move("STOP").json()["status"] == "COMPLETED"  # nothing awaits review
    assert move("LAUNCH").status_code == 400


def test_stopping_with_work_to_review_awaits_review(fake, api):
    study_id = published(api)["id"]
    finished(fake, study_id, "P1")
    stopped = api.post(f"studies/{study_id}/transition/", json={"action": "STOP"})
    assert stopped.json()["status"] == "AWAITING REVIEW"


def test_updating_places_and_names_and_what_a_published_study_keeps(fake, api):
    study_id = published(api)["id"]
    start(fake, study_id, "P1")
    start(fake, study_id, "P2")
    fewer = api.patch(f"studies/{study_id}/", json={"total_available_places": 1})
    assert fewer.status_code == 400 and "total_available_places" in fewer.json()["error"]["detail"]
    more = api.patch(
        f"studies/{study_id}/", json={"total_available_places": 5, "internal_name": "x"}
    )
    assert more.json()["total_available_places"] == 5 and more.json()["internal_name"] == "x"
    assert api.patch(f"studies/{study_id}/", json={"reward": 500}).status_code == 400
    assert api.get(f"studies/{study_id}/").json()["reward"] == 125


# --- the participant site --------------------------------------------------------------------


def test_starting_redirects_with_the_three_parameters_and_sets_the_session_cookie(fake, api):
    study_id = published(api)["id"]
    browser = Session(fake.url)
    response = browser.get(f"/studies/{study_id}/start?PROLIFIC_PID=P%2F1", allow_redirects=False)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    session_id = browser.cookies["fake_prolific_session"]
    assert query == {"pid": ["P/1"], "study": [study_id], "session": [session_id]}
    assert "P%2F1" in response.headers["Location"]  # encoded
    sub = submission(api, session_id)
    assert sub["status"] == "ACTIVE" and sub["participant"] == "P/1"
    assert sub["started_at"].endswith("Z") and sub["completed_at"] is None
    _, generated = start(fake, study_id, pid=None)
    assert len(submission(api, generated)["participant_id"]) == 24


def test_starting_is_refused_when_full_closed_or_repeated(fake, api):
    study_id = published(api, total_available_places=1)["id"]
    start(fake, study_id, "P1")
    browser = Session(fake.url)
    full = browser.get(f"/studies/{study_id}/start?PROLIFIC_PID=P2", allow_redirects=False)
    assert full.status_code == 409 and "taken" in full.text
    again = browser.get(f"/studies/{study_id}/start?PROLIFIC_PID=P1", allow_redirects=False)
    assert again.status_code == 409
    draft = create(api)["id"]
    assert browser.get(f"/studies/{draft}/start?PROLIFIC_PID=P3").status_code == 409
    assert len(fake.submissions) == 1


def test_completing_with_each_kind_of_code(fake, api, clock):
    study_id = published(api)["id"]
    done, done_id = start(fake, study_id, "P1")
    refused, refused_id = start(fake, study_id, "P2")
    wrong, wrong_id = start(fake, study_id, "P3")
    clock.advance(90)

    page = done.get("/submissions/complete?cc=DONE1")
    assert page.status_code == 200 and "AWAITING REVIEW" in page.text
    sub = submission(api, done_id)
    assert (sub["status"], sub["study_code"], sub["time_taken"]) == ("AWAITING REVIEW", "DONE1", 90)
    assert sub["is_complete"] and sub["completed_at"].endswith("Z")

    assert "RETURNED" in refused.get("/submissions/complete?cc=NOPE1").text
    assert submission(api, refused_id)["status"] == "RETURNED"

    page = wrong.get("/submissions/complete?cc=GUESS")
    assert page.status_code == 400 and "not valid" in page.text
    assert submission(api, wrong_id)["status"] == "ACTIVE"
    # without a cookie the session comes from the query; a finished one cannot finish again
    again = requests.get(f"{fake.url}/submissions/complete?cc=DONE1&session={done_id}")
    assert again.status_code == 409 and "AWAITING REVIEW" in again.text


def test_returning_gives_the_place_back(fake, api):
    study_id = published(api, total_available_places=1)["id"]
    browser, submission_id = start(fake, study_id, "P1")
    page = browser.get("/submissions/return")
    assert page.status_code == 200 and "RETURNED" in page.text
    assert submission(api, submission_id)["status"] == "RETURNED"
    start(fake, study_id, "P2")  # the only place is free again


def test_active_submissions_time_out_after_the_maximum_time(fake, api, clock):
    study_id = published(api, total_available_places=1)["id"]  # 5 min estimated → 17 allowed
    _, submission_id = start(fake, study_id, "P1")
    clock.advance(17 * 60)
    assert submission(api, submission_id)["status"] == "ACTIVE"
    clock.advance(1)
    assert submission(api, submission_id)["status"] == "TIMED-OUT"
    start(fake, study_id, "P2")

    other = published(api, maximum_allowed_time=60)["id"]
    _, late = start(fake, other, "P9")
    clock.advance(59 * 60)
    assert submission(api, late)["status"] == "ACTIVE"


# --- review ----------------------------------------------------------------------------------


def test_approving_and_rejecting_one_submission(fake, api):
    study_id = published(api)["id"]
    _, active_id = start(fake, study_id, "P0")
    first, second = finished(fake, study_id, "P1"), finished(fake, study_id, "P2")

    def move(submission_id: str, **body: Any) -> requests.Response:
        return api.post(f"submissions/{submission_id}/transition/", json=body)

    early = move(active_id, action="APPROVE")
    assert early.status_code == 400 and "ACTIVE" in early.json()["error"]["detail"]
    assert move(first, action="APPROVE").json()["status"] == "APPROVED"
    assert move(first, action="APPROVE").status_code == 200  # "idempotent", says the reference
    assert (
        move(first, action="REJECT", message=LONG_REASON, rejection_category="NO_DATA").status_code
        == 400
    )

    short = move(second, action="REJECT", message="Too fast.", rejection_category="TOO_QUICKLY")
    assert short.status_code == 400 and "message" in short.json()["error"]["detail"]
    unknown = move(second, action="REJECT", message=LONG_REASON, rejection_category="RUDE")
    assert "rejection_category" in unknown.json()["error"]["detail"]
    assert submission(api, second)["status"] == "AWAITING REVIEW"
    rejected = move(second, action="REJECT", message=LONG_REASON, rejection_category="TOO_QUICKLY")
    assert rejected.json()["status"] == "REJECTED"


def test_bulk_approve_is_all_or_nothing_on_ids_and_skips_the_approved(fake, api):
    study_id = published(api)["id"]
    other_id = published(api, internal_name="other")["id"]
    mine = [finished(fake, study_id, "P1"), finished(fake, study_id, "P2")]
    foreign = finished(fake, other_id, "P1")

    bad = api.post(
        "submissions/bulk-approve/", json={"study_id": study_id, "submission_ids": [*mine, foreign]}
    )
    assert bad.status_code == 400 and foreign in json.dumps(bad.json())
    assert {submission(api, s)["status"] for s in mine} == {"AWAITING REVIEW"}

    body = {"study_id": study_id, "submission_ids": mine}
    ok = api.post("submissions/bulk-approve/", json=body)
    assert ok.status_code == 200 and isinstance(ok.json(), str)
    assert {submission(api, s)["status"] for s in mine} == {"APPROVED"}
    assert api.post("submissions/bulk-approve/", json=body).status_code == 200
    by_participant = {"study_id": other_id, "participant_ids": ["P1"]}
    assert api.post("submissions/bulk-approve/", json=by_participant).status_code == 200
    assert submission(api, foreign)["status"] == "APPROVED"
    assert api.get(f"studies/{study_id}/").json()["status"] == "ACTIVE"  # one place left


def test_bonuses_are_set_up_then_paid_and_each_pay_call_pays_again(fake, api, clock):
    study_id = published(api)["id"]
    sub_id = finished(fake, study_id, "P1")
    wrong = api.post(
        "submissions/bonus-payments/",
        json={"study_id": study_id, "csv_bonuses": "P1,1.50\nSTRANGER,2.00\n"},
    )
    assert wrong.status_code == 400 and "STRANGER" in json.dumps(wrong.json())

    setup = api.post(
        "submissions/bonus-payments/",
        json={"study_id": study_id, "csv_bonuses": f"{sub_id},1.50\n"},
    )
    bonus = setup.json()
    assert (bonus["study"], bonus["amount"], bonus["fees"], bonus["vat"]) == (study_id, 150, 50, 0)
    assert bonus["total_amount"] == 200 and fake.payments == []
    balance = fake.balance

    for _ in range(2):
        paid = api.post(f"bulk-bonus-payments/{bonus['id']}/pay/")
        assert paid.status_code == 202 and isinstance(paid.json(), str)
    assert len(fake.payments) == 2 and fake.balance == balance - 400
    assert submission(api, sub_id)["bonus_payments"] == []
    clock.advance(fake.bonus_delay_s)
    assert submission(api, sub_id)["bonus_payments"] == [150, 150]
    assert api.post("bulk-bonus-payments/ffffffffffffffffffffffff/pay/").status_code == 404


def test_messages_are_kept(fake, api):
    body = {"recipient_id": "P1", "study_id": "s", "body": "Thanks!"}
    assert api.post("messages/", json=body).status_code == 204
    assert api.post("messages/", json={"recipient_id": "P1"}).status_code == 400
    assert [m["body"] for m in fake.messages] == ["Thanks!"]


# --- webhooks --------------------------------------------------------------------------------


@pytest.fixture
def receiver():
    """A tiny webhook receiver: every POST's headers and raw body, in order."""
    got: list[tuple[Message, bytes]] = []

    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.headers, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/prolific/", got
    server.shutdown()
    server.server_close()


def test_status_changes_are_posted_signed_the_documented_way(fake, api, receiver):
    url, got = receiver
    fake.hook_url, fake.hook_secret = url, "s3cret"
    study_id = published(api)["id"]
    sub_id = finished(fake, study_id, "P1")
    api.post(f"submissions/{sub_id}/transition/", json={"action": "APPROVE"})
    assert fake.wait_for_deliveries(3)
    assert [d["status"] for d in fake.deliveries] == [200, 200, 200]

    statuses = []
    for headers, body in got:
        stamp, signature = (
            headers["X-Prolific-Request-Timestamp"],
            headers["X-Prolific-Request-Signature"],
        )
        expected = base64.b64encode(
            hmac.new(b"s3cret", (stamp + body.decode()).encode(), hashlib.sha256).digest()
        )
        assert hmac.compare_digest(expected, signature.encode())
        assert stamp == str(int(START))
        event = json.loads(body)
        assert (event["event_type"], event["resource_id"]) == ("submission.status.change", sub_id)
        assert (event["study_id"], event["participant_id"]) == (study_id, "P1")
        statuses.append(event["status"])
    assert statuses == ["ACTIVE", "AWAITING REVIEW", "APPROVED"]
    assert len({headers["X-Event-ID"] for headers, _ in got}) == 3


def test_a_time_out_is_posted_too_and_nothing_without_a_hook_url(fake, api, clock, receiver):
    study_id = published(api)["id"]
    start(fake, study_id, "P1")
    fake.hook_url, fake.hook_secret = receiver[0], "k"
    clock.advance(18 * 60)
    api.get("users/me/")
    assert fake.wait_for_deliveries(1)
    assert json.loads(fake.deliveries[0]["body"])["status"] == "TIMED-OUT"
    assert not fake.wait_for_deliveries(2, timeout=0.2)


# --- crash hooks -----------------------------------------------------------------------------


def test_fail_answers_the_error_without_acting(fake, api):
    fake.fail(r"^POST /api/v1/studies/$", status=503, times=2)
    for _ in range(2):
        response = api.post("studies/", json=study_body())
        assert response.status_code == 503 and response.json()["error"]["status"] == 503
    assert fake.studies == {}
    assert api.post("studies/", json=study_body()).status_code == 201
    assert fake.count(r"^POST /api/v1/studies/$") == 3

    fake.fail(r"GET /api/v1/users/me/", status=429)
    throttled = api.get("users/me/")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert api.get("users/me/").status_code == 200


def test_drop_after_acts_and_the_caller_never_hears(fake, api):
    study_id = published(api)["id"]
    sub_id = finished(fake, study_id, "P1")
    fake.drop_after(r"POST /api/v1/submissions/[0-9a-f]+/transition/")
    with pytest.raises(requests.ConnectionError):
        api.post(f"submissions/{sub_id}/transition/", json={"action": "APPROVE"})
    assert fake.submissions[sub_id]["status"] == "APPROVED"

    bonus = api.post(
        "submissions/bonus-payments/", json={"study_id": study_id, "csv_bonuses": "P1,1.00"}
    ).json()
    fake.drop_after(r"/pay/$")
    with pytest.raises(requests.ConnectionError):
        api.post(f"bulk-bonus-payments/{bonus['id']}/pay/")
    assert len(fake.payments) == 1  # paid, though the caller saw only a broken connection


@pytest.mark.parametrize("before", [True, False])
def test_hold_pauses_a_request_before_or_after_it_acts(fake, api, before):
    study_id = create(api)["id"]
    hold = fake.hold(r"/transition/$", before=before)
    answers: list[requests.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            api.post(f"studies/{study_id}/transition/", json={"action": "PUBLISH"}, timeout=10)
        ),
        daemon=True,
    )
    caller.start()
    assert hold.arrived.wait(5)
    caller.join(0.2)
    assert caller.is_alive() and answers == []
    assert fake.studies[study_id]["status"] == ("UNPUBLISHED" if before else "ACTIVE")
    hold.release()
    caller.join(5)
    assert answers[0].status_code == 200 and fake.studies[study_id]["status"] == "ACTIVE"


def test_stopping_the_fake_releases_held_requests(clock):
    fake = FakeProlific(clock=clock).start()
    hold = fake.hold(r"users/me", before=True)
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(
                requests.get(
                    f"{fake.url}/api/v1/users/me/", headers={"Authorization": "Token t"}, timeout=10
                )
            )
        except requests.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    assert hold.arrived.wait(5)
    fake.stop()
    caller.join(5)
    assert not caller.is_alive() and len(outcome) == 1
