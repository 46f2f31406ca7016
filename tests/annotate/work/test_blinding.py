"""Blinding: nothing a worker can fetch names a label, target, model, defense or condition.

One worker goes through the real pages and API of an open study whose staff-side rows carry
telling names; every byte they can reach (HTML, static files, JSON, images, headers, URLs,
error messages) is collected and searched.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from dataclasses import dataclass, field

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from annotate.models import Item, Lease, StimulusSet
from annotate.stimuli.imaging import canonical_png
from tests.annotate.factories import make_model_row, make_set, make_study

pytestmark = pytest.mark.django_db

MODEL = "secret-model-margin"
ADVERSARIAL = "lenet5-margin-hc"
NOISE = "lenet5-margin-hc-noise"
CHECKS = "attn-digits-gold"
STUDY = "secret-study-margin-vs-noise"

# Substrings no worker-visible text may contain (case-insensitive) ...
FORBIDDEN = [
    MODEL,
    ADVERSARIAL,
    NOISE,
    CHECKS,
    STUDY,
    "margin",
    "lenet",
    "adversarial",
    "attention",
    "noise",
    "flipped",
    "defense",
    "condition",
    "stimul",
    "target",
    "original",
    "source_index",
    "is_attention",
    "set_id",
    "shown_pred",
    "confidence",
    "weights",
    "sha256",
    "ab" * 32,
]
# ... and words that may only be part of longer words (base64 tokens contain anything short).
FORBIDDEN_WORDS = ["clean", "gold", "truth", "model"]

# ``deadline`` is the recruiting site's time limit: the same for every assignment of a study.
PAYLOAD_KEYS = {
    "items", "answers", "total", "answered", "expires", "deadline", "status", "completion_code"
}  # fmt: skip
ITEM_KEYS = {"key", "position", "image"}
ANSWER_KEYS = {"label", "ms"}
# PNG chunks that carry pixels only; text, time and EXIF chunks are refused.
PIXEL_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}


@dataclass
class Fetched:
    """Everything a worker saw: text bodies, header blocks and URLs."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_response(self, where: str, response, *, body: bool = True) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        self.add(f"{where} headers", headers)
        if body and not response.streaming:
            self.add(where, response.content.decode("utf-8"))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def decoded_token_parts(token: str) -> list[str]:
    """Whatever a signed token carries, decoded the way django.core.signing encodes it."""
    parts = []
    for piece in token.split(":"):
        compressed = piece.startswith(".")
        raw = piece.lstrip(".")
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            if compressed:
                data = zlib.decompress(data)
        except (binascii.Error, ValueError, zlib.error):
            continue
        parts.append(data.decode("latin-1"))
    return parts


def static_paths(html: str) -> list[str]:
    from django.conf import settings

    prefix = "/" + settings.STATIC_URL.lstrip("/")
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    return [ref[len(prefix) :] for ref in refs if ref.startswith(prefix)]


@pytest.fixture
def study():
    model = make_model_row(MODEL, defense="margin")
    adversarial = make_set(2, name=ADVERSARIAL, model=model)
    noise = make_set(2, name=NOISE, kind=StimulusSet.Kind.NOISE, model=model, first_source=2)
    checks = make_set(3, name=CHECKS, kind=StimulusSet.Kind.ATTENTION, model=model)
    return make_study(
        [adversarial, noise],
        n_assignments=1,
        size=5,
        attention=checks,
        name=STUDY,
        title="Which digit is this?",
        instructions="Type the digit you see under each image.",
    )


def test_nothing_a_worker_can_fetch_reveals_the_design(client, study):
    seen = Fetched()
    entry = client.get(reverse("annotate:study-entry", args=[study.key]), {"worker_id": "w-b"})
    assert entry.status_code == 200
    seen.add_response("entry", entry)

    start = client.post(
        reverse("annotate:study-start", args=[study.key]), {"worker_id": "w-b", "consent": "yes"}
    )
    assert start.status_code == 302
    seen.add_response("start", start)
    seen.add("redirect", start["Location"])
    token = start["Location"].split("/")[2]
    for part in decoded_token_parts(token):
        seen.add("token", part)

    work = client.get(start["Location"])
    assert work.status_code == 200
    seen.add_response("work page", work)

    html_pages = [entry.content.decode(), work.content.decode()]

    api = reverse("annotate:api-work", args=[token])
    first = client.get(api)
    assert first.status_code == 200
    seen.add_response("payload", first)
    payload = first.json()
    assert set(payload) <= PAYLOAD_KEYS
    assert payload["total"] == 5 and len(payload["items"]) == 5

    lease = Lease.objects.get()
    items = {item.key: item for item in Item.objects.filter(assignment=lease.assignment)}
    assert {it["key"] for it in payload["items"]} == set(items)
    assert sorted(it["position"] for it in payload["items"]) == sorted(
        item.position for item in items.values()
    )
    image_kinds = set()
    stored_names = []
    for it in payload["items"]:
        assert set(it) == ITEM_KEYS
        item = items[it["key"]]
        assert it["key"] not in {str(item.pk), str(item.stimulus_id), str(item.stimulus.pk)}
        prefix = "data:image/png;base64,"
        assert it["image"].startswith(prefix)
        data = base64.b64decode(it["image"][len(prefix) :], validate=True)
        # Exactly the stored pixels, in the one canonical encoding, nothing but pixel chunks.
        with item.stimulus.image.open("rb") as fh:
            assert data == canonical_png(fh.read())
        assert {kind for kind, _ in png_chunks(data)} <= PIXEL_CHUNKS
        stored_names.append(item.stimulus.image.name.rsplit("/", 1)[-1].removesuffix(".png"))
        image_kinds.add(item.is_attention)
    # Attention checks and study items are served alike, and both kinds were looked at.
    assert image_kinds == {True, False}

    keys = [it["key"] for it in payload["items"]]
    answers = [{"item": key, "label": str(i), "ms": 500 + i} for i, key in enumerate(keys)]
    saved = client.put(
        api + "/answers", json.dumps({"answers": answers[:2]}), content_type="application/json"
    )
    assert saved.status_code == 200
    seen.add_response("save", saved)
    resumed = client.get(api)
    seen.add_response("payload after save", resumed)
    resumed_answers = resumed.json()["answers"]
    assert set(resumed_answers) == set(keys[:2])
    assert all(set(value) == ANSWER_KEYS for value in resumed_answers.values())

    # Error messages a worker can provoke name nothing either.
    for body in (
        {"answers": [{"item": "not-an-item", "label": "3", "ms": 1}]},
        {"answers": [{"item": keys[0], "label": "x", "ms": 1}]},
    ):
        refused = client.put(api + "/answers", json.dumps(body), content_type="application/json")
        assert 400 <= refused.status_code < 500
        seen.add_response("refused save", refused)
    for url in (reverse("annotate:api-work", args=["forged"]),):
        seen.add_response(f"refused {url}", client.get(url))

    submitted = client.post(
        api + "/submit", json.dumps({"answers": answers}), content_type="application/json"
    )
    assert submitted.status_code == 200
    seen.add_response("submit", submitted)
    assert set(submitted.json()) == {"completion_code", "done_url"}
    final = client.get(api)
    seen.add_response("payload after submit", final)
    assert set(final.json()) <= PAYLOAD_KEYS

    done = client.get(submitted.json()["done_url"])
    assert done.status_code == 200
    seen.add_response("done", done)
    html_pages.append(done.content.decode())

    statics = sorted({path for html in html_pages for path in static_paths(html)})
    assert {"annotate/work.js", "annotate/work.css"} <= set(statics)
    for path in statics:
        found = finders.find(path)
        assert found, path
        with open(found, encoding="utf-8") as fh:
            text = fh.read()
        if path.endswith(".css"):  # the property, not the defense
            text = re.sub(r"\bmargin(-[a-z]+)?\s*:", "", text)
        seen.add(f"static {path}", text)

    leaks = [
        (where, word)
        for where, text in seen.texts
        for word in FORBIDDEN
        if word.lower() in text.lower()
    ]
    leaks += [
        (where, word)
        for where, text in seen.texts
        for word in FORBIDDEN_WORDS
        if re.search(rf"(?<![A-Za-z0-9]){word}(?![A-Za-z0-9])", text, re.IGNORECASE)
    ]
    assert not leaks
    # Storage names are shared across studies and workers: never exposed.
    assert not [(where, n) for where, text in seen.texts for n in stored_names if n in text]
    # Sanity: the search does look at what was fetched.
    assert any("Which digit is this?" in text for _, text in seen.texts)


def test_item_keys_differ_between_workers_for_the_same_image(client):
    """Two assignments showing the same check image give it unrelated keys."""
    model = make_model_row(MODEL, defense="margin")
    adversarial = make_set(8, name=ADVERSARIAL, model=model)
    checks = make_set(1, name=CHECKS, kind=StimulusSet.Kind.ATTENTION, model=model)
    study = make_study([adversarial], n_assignments=2, size=5, attention=checks)
    keys, check_images = [], []
    for worker in ("w-1", "w-2"):
        response = client.post(
            reverse("annotate:study-start", args=[study.key]),
            {"worker_id": worker, "consent": "yes"},
        )
        token = response["Location"].split("/")[2]
        payload = client.get(reverse("annotate:api-work", args=[token])).json()
        keys.append({it["key"] for it in payload["items"]})
        check_images.append(payload["items"][-1]["image"])

    assert not keys[0] & keys[1]
    assert check_images[0] == check_images[1]  # the same pixels, under unrelated keys
