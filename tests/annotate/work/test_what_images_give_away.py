"""Nothing about an image but its pixels reaches a worker (findings 5 and 6 of the review).

The instructions' example is never a digit some grid shows, and every image of a study is
served as the same number of bytes, whatever its condition or how it was stored.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from annotate.models import Item, Stimulus, StimulusSet, Study, opaque_key
from tests.annotate.factories import make_model_row, make_set, make_study

pytestmark = pytest.mark.django_db

DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def served_images(client, study: Study) -> list[bytes]:
    """Every image every assignment of ``study`` serves, leasing each once through the API."""
    images = []
    for n in range(study.assignments.count()):
        leased = client.post(
            reverse("annotate:api-lease", args=[study.key]),
            json.dumps({"worker_id": f"w{n}"}),
            "application/json",
        )
        assert leased.status_code == 201, leased.content
        payload = client.get(reverse("annotate:api-work", args=[leased.json()["token"]])).json()
        images += [base64.b64decode(DATA_URI.fullmatch(i["image"])[1]) for i in payload["items"]]
    return images


def entry_example(client, study: Study) -> bytes | None:
    page = client.get(reverse("annotate:study-entry", args=[study.key])).content.decode()
    found = DATA_URI.search(page)
    return base64.b64decode(found[1]) if found else None


def fully_used_attention(n_assignments: int = 4) -> tuple[Study, StimulusSet]:
    """A study whose attention set has exactly as many digits as its grids show."""
    model = make_model_row()
    checks = make_set(n_assignments, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=500)
    study = make_study(
        [make_set(4 * n_assignments, model=model)],
        n_assignments=n_assignments,
        size=5,
        attention=checks,
    )
    return study, checks


def test_with_every_check_digit_in_use_the_example_is_none_of_them(client):
    study, checks = fully_used_attention()
    assert not checks.stimuli.exclude(items__assignment__study=study).exists()  # no spare
    assert entry_example(client, study) is None  # better no example than a check given away


def test_a_reserved_example_is_shown_and_no_grid_shows_it(client):
    study, checks = fully_used_attention()
    reserved = make_set(1, kind=StimulusSet.Kind.ATTENTION, first_source=900).stimuli.get()
    Stimulus.objects.filter(pk=reserved.pk).update(set=checks)
    StimulusSet.objects.filter(pk=checks.pk).update(example=reserved)
    example = entry_example(client, study)
    assert example is not None
    served = served_images(client, study)
    assert example not in served
    shown_checks = Item.objects.filter(assignment__study=study, is_attention=True)
    assert reserved.pk not in shown_checks.values_list("stimulus", flat=True)


def _store_noisy(stimulus: Stimulus, seed: int) -> None:
    """Re-store a stimulus as a heavily compressed PNG of a different content (other size)."""
    rng = np.random.default_rng(seed)
    pixels = np.where(rng.random((28, 28)) < 0.9, 0, 255).astype(np.uint8)  # mostly black
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG", optimize=True)
    stimulus.image.save(f"{opaque_key()}.png", ContentFile(buf.getvalue()), save=True)


def test_every_image_of_a_study_is_served_as_the_same_number_of_bytes(client):
    model = make_model_row()
    adversarial = make_set(12, model=model)
    clean = make_set(12, kind=StimulusSet.Kind.CLEAN, model=model)
    for i, stimulus in enumerate(clean.stimuli.all()):  # a control stored another way
        _store_noisy(stimulus, i)
    checks = make_set(6, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=500)
    study = make_study([adversarial, clean], n_assignments=4, size=7, attention=checks)
    stored = {len(s.image.read()) for s in Stimulus.objects.filter(set__in=[adversarial, clean])}
    assert len(stored) > 1  # what is stored differs in size by condition and content
    served = served_images(client, study)
    assert len(served) == 4 * 7
    sizes = {len(image) for image in served}
    example = entry_example(client, study)
    if example is not None:
        sizes.add(len(example))
    assert len(sizes) == 1, sizes
