"""What a worker's browser receives for a lease: opaque item keys and the pixels, inline.

Images travel as ``data:`` URIs read through the storage API, so a task loads in one request
(phones, flaky networks, third-party frames) and no image URL or file name reaches a worker.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.db.models import Q
from django.db.models.fields.files import FieldFile

from annotate import errors
from annotate.models import Event, Item, Lease, Stimulus, Study
from annotate.stimuli.imaging import canonical_png

logger = logging.getLogger(__name__)


def lease_serve(lease: Lease) -> dict[str, Any]:
    """What the labeling page needs, and nothing else; records a ``served`` event.

    Items (opaque keys, positions, images), the answers saved so far, progress, expiry, status
    and, once submitted, the completion code.
    """
    items = list(
        lease.assignment.items.order_by("position")
        .select_related("stimulus")
        .only("key", "position", "stimulus__image")
    )
    answers = {
        key: {"label": label, "ms": ms}
        for key, label, ms in lease.answers.values_list("item__key", "label", "response_ms")
    }
    images = [image_data_uri(item.stimulus.image) for item in items]
    Event.objects.record(Event.Kind.SERVED, study=lease.study, lease=lease)
    return {
        "items": [
            {"key": item.key, "position": item.position, "image": image}
            for item, image in zip(items, images, strict=True)
        ],
        "answers": answers,
        "total": len(items),
        "answered": len(answers),
        "expires": lease.expires.isoformat(),
        # The recruiting site's hard limit (the page warns before it); None where there is none.
        "deadline": lease.deadline.isoformat() if lease.deadline else None,
        "status": lease.status,
        "completion_code": lease.completion_code
        if lease.status == Lease.Status.SUBMITTED
        else None,
    }


def image_data_uri(image: FieldFile) -> str:
    """The stored image as a ``data:`` URI in the one canonical PNG encoding (read through the
    storage API): every image of a study is then the same number of bytes, whatever its set,
    condition or the encoder that stored it."""
    try:
        with image.open("rb") as fh:
            data = canonical_png(fh.read())
    except (OSError, BotoCoreError, ClientError):  # a missing file; a remote store refusing
        logger.error("image file %r is missing or unreadable", image.name)
        raise errors.ImageUnavailable() from None
    except ValueError:  # not a PNG we can read (PIL's UnidentifiedImageError is one)
        logger.error("image file %r is not a readable PNG", image.name)
        raise errors.ImageUnavailable() from None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def example_image(study: Study) -> str | None:
    """A clean digit for the instructions, as a data URI: the attention set's reserved example,
    else a digit of the set that no assignment of the study shows, else none at all — never an
    image some grid shows, so the example gives no check away."""
    item = (
        Item.objects.filter(Q(is_attention=True) | Q(is_filler=True), assignment__study=study)
        .select_related("stimulus__set")
        .order_by("assignment__index", "position")
        .first()
    )
    if item is None:
        return None
    pool = item.stimulus.set
    example = pool.example if pool.example_id else None
    if example is None:
        example = (
            Stimulus.objects.filter(set=pool)
            .exclude(items__assignment__study=study)
            .order_by("source_index")
            .first()
        )
    if example is None:
        return None
    try:
        return image_data_uri(example.image)
    except errors.WorkError:
        return None
