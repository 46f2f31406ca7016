"""Garbage at every worker and staff URL: never a 5xx, and no row of the study data changes.

Property-style, seeded: every named route of the worker pages, the worker API, the console,
the staff API and the MTurk console page, with real and made-up path parameters, gets random
bytes, deep, huge and dirty JSON, control characters in the path, the query and forms, wrong
methods and content types, chunked bodies and lying Content-Length headers — anonymously and
as a staff user (whose requests carry no CSRF token, as a forged form would not). Runs on the
database the suite uses (PostgreSQL in CI).
"""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import get_resolver, reverse

from annotate.models import Event, Lease, Stimulus, StimulusSet
from annotate.work.tokens import lease_token
from tests.annotate.factories import make_study, work

pytestmark = pytest.mark.django_db

SEED = 20261203
SKIP_NAMESPACES = {"admin"}  # Django's own admin
# The study data: no refused request may change any of it. The event log may only grow by
# "served" (a valid token's items were fetched, which garbage around it does not prevent).
DATA_APPS = ("annotate", "robustness", "mturk")


def routes() -> list[tuple[str, list[str]]]:
    """Every named route (namespace:name) with its parameter names."""
    found: set[tuple[str, tuple[str, ...]]] = set()

    def walk(resolver, namespace: str) -> None:
        for key, (_, sub) in resolver.namespace_dict.items():
            if key not in SKIP_NAMESPACES:
                walk(sub, f"{namespace}{key}:")
        for name in resolver.reverse_dict:
            if isinstance(name, str):
                for possibilities, *_ in resolver.reverse_dict.getlist(name):
                    found.add((namespace + name, tuple(possibilities[0][1])))

    walk(get_resolver(), "")
    return sorted((name, list(params)) for name, params in found if ":" in name)


def fingerprint() -> str:
    """A hash of every row of the study data (events: all but "served")."""
    digest = hashlib.sha256()
    for app in DATA_APPS:
        if not apps.is_installed(app) and app not in {c.label for c in apps.get_app_configs()}:
            continue
        for model in sorted(apps.get_app_config(app).get_models(), key=lambda m: m.__name__):
            rows = model.objects.order_by("pk")
            if model is Event:
                rows = rows.exclude(kind=Event.Kind.SERVED)
            for row in rows.values_list():
                digest.update(repr(row).encode())
    return digest.hexdigest()


def garbage_text(rng: random.Random) -> str:
    alphabet = ["\x00", "\x01", "\x1b", "\x7f", "\n", "%", "'", '"', "<", ">", "../", "é", "\ud7ff"]
    return "".join(rng.choice(alphabet + list("abcXYZ019-_.")) for _ in range(rng.randint(1, 40)))


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def bodies(rng: random.Random) -> list[tuple[str, bytes, dict[str, str]]]:
    """(content type, body, extra headers): one of each kind of garbage."""
    dirty = json.dumps(
        {"answers": [{"item": "x\u0000", "label": "\u0007"}], "worker_id": "a\u0000"}
    )
    huge = json.dumps({"answers": ["7" * 200_000]}).encode()
    return [
        ("application/json", rng.randbytes(rng.randint(1, 3000)), {}),
        ("application/json", deep_json(rng.choice([40, 2_000, 20_000])), {}),
        ("application/json", huge, {}),
        ("application/json", dirty.encode(), {}),
        ("application/json", b'{"worker_id": "\\ud800", "answers": 5}', {}),
        ("application/json; charset=utf-16", "{}".encode("utf-16"), {}),
        ("text/plain", rng.randbytes(200), {}),
        ("application/x-www-form-urlencoded", b"worker_id=%00&consent=no&x=%ff%fe", {}),
        ("multipart/form-data; boundary=zz", b"--zz\r\nnonsense\r\n--zz--", {}),
        ("application/xml", b"<a><b/></a>", {}),
        ("application/json", b'{"answers": []}', {"HTTP_TRANSFER_ENCODING": "chunked"}),
        ("application/json", b'{"answers": []}', {"CONTENT_LENGTH": "12abc"}),
        ("application/json", b"{}", {"CONTENT_LENGTH": "-1"}),
    ]


@pytest.fixture
def world():
    """A study with a submitted lease, an active one, staff, and every kind of row."""
    study = make_study(n_assignments=4, size=3)
    done = work(study, "w-done")
    active = work(study, "w-active", submit=False)
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    stimulus = Stimulus.objects.first()
    return {
        "study_key": [study.key, "nope", "%00", "a" * 300],
        "token": [lease_token(done), lease_token(active), "forged:token", "x" * 250],
        "name": [study.name, StimulusSet.objects.first().name, "nope", "a.b"],
        "pk": [str(stimulus.pk), "999999", "0"],
        "which": ["shown", "clean", "evil"],
        "fmt": ["csv", "json", "xlsx"],
        "action": ["sync", "approve", "bonus", "expire", "drop"],
        "staff": staff,
        "leases": Lease.objects.count(),
    }


def paths(world, name: str, params: list[str], rng: random.Random) -> list[str]:
    """The route with real values, with made-up ones, and with a control character appended."""
    out = []
    for _ in range(2):
        kwargs = {p: rng.choice(world[p]) for p in params}
        try:
            out.append(reverse(name, kwargs=kwargs))
        except Exception:  # a made-up value the route's converter refuses: not a URL
            continue
    if out:
        out.append(out[0].rstrip("/") + "%00/")
    return out


def test_no_input_makes_any_url_answer_5xx_or_change_a_row(world):
    rng = random.Random(SEED)
    anonymous = Client(raise_request_exception=False)  # a 500 is a finding, not a crash
    staff = Client(enforce_csrf_checks=True, raise_request_exception=False)  # no CSRF token
    staff.force_login(world["staff"])
    before = fingerprint()
    failures, requests = [], 0
    for name, params in routes():
        for path in paths(world, name, params, rng):
            queries = ["", f"?q={garbage_text(rng)}", "?page=-1&page_size=99999&format=x"]
            for client in (anonymous, staff):
                cases = [
                    ("GET", "", b"", {}),
                    ("HEAD", "", b"", {}),
                    ("OPTIONS", "", b"", {}),
                    ("TRACE", "", b"", {}),
                    ("DELETE", "application/json", b"{}", {}),
                    ("PATCH", "application/json", rng.randbytes(50), {}),
                ]
                cases += [(rng.choice(["POST", "PUT"]), *body) for body in bodies(rng)]
                for method, content_type, body, extra in cases:
                    query = rng.choice(queries)
                    response = client.generic(method, path + query, body, content_type, **extra)
                    requests += 1
                    if response.status_code >= 500:
                        failures.append((response.status_code, method, path + query, body[:60]))
    assert not failures, "\n".join(f"{s} {m} {p} {b!r}" for s, m, p, b in failures[:40])
    assert requests > 1000
    assert fingerprint() == before
    assert Lease.objects.count() == world["leases"]
