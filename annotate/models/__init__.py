"""The human-study data, split by domain (one app, one migration history, tables unchanged).

Modules:
    ``keys``      name rules, opaque keys and completion codes.
    ``stimuli``   ``StimulusSet`` (adversarial, control or attention images of one model) and
                  ``Stimulus`` (one image with its labels, predictions and provenance).
    ``studies``   ``Study`` (frozen design), ``Condition``, ``Assignment``, ``Item``.
    ``work``      ``Worker``, ``Lease``, ``Answer`` and the append-only ``Event`` log.

Staff-facing rows (sets, stimuli, conditions) carry labels, targets and provenance; what a
worker can reach goes through opaque keys only (``Study.key``, ``Item.key``, ``Lease.key``,
random image file names), so nothing served to a worker names a label, target, model,
defense or condition. Recruitment providers keep their own rows in their own apps.
"""

from annotate.models.keys import completion_code, name_validator, opaque_key
from annotate.models.stimuli import Stimulus, StimulusSet
from annotate.models.studies import Assignment, Condition, Item, Study
from annotate.models.work import LIVE, Answer, Event, Lease, Worker

__all__ = [
    "LIVE",
    "Answer",
    "Assignment",
    "Condition",
    "Event",
    "Item",
    "Lease",
    "Stimulus",
    "StimulusSet",
    "Study",
    "Worker",
    "completion_code",
    "name_validator",
    "opaque_key",
]
