"""Simulated workers: fill a study with plausible, clearly marked answers (demos, load, tests).

Each simulated worker goes through the real worker services — lease, fetch the task, autosave
in two batches, submit — so the data exercise every path a person's would. Their answers come
from the seeded response model below, never from a person: the workers are created with
``Worker.simulated`` and the study is flagged ``Study.simulated`` before any answer is written,
so every view and export can say so.

Response model (per item; labels '0'–'9' or '?'):

==================  ========  ======  ===========  =====
item                original  target  other digit  '?'
==================  ========  ======  ===========  =====
adversarial         0.80      0.10    0.05         0.05
control (clean…)    0.93      0.02    0.03         0.02
attention check     0.97      —       0.02         0.01
==================  ========  ======  ===========  =====

"other digit" is uniform over the digits that are neither the original nor the target; when a
stimulus has no target its target share goes to "other digit". Response times are lognormal
(median 1.5 s, σ 0.5 in log space), clipped to 0.2 s … 1 h. Draws come from
``numpy.random.default_rng([seed, assignment index])``, so a given seed gives the same labels for
the same assignment whichever simulated worker happens to lease it.
"""

from __future__ import annotations

import numpy as np

from annotate import errors
from annotate.models import Answer, Lease, StimulusSet, Study, Worker
from annotate.work.answers import MAX_RESPONSE_MS, answers_save, lease_submit
from annotate.work.leases import lease_acquire
from annotate.work.payload import lease_serve

# (original, target, other digit, '?') for each kind of item; each row sums to 1.
RESPONSE_MODEL: dict[str, tuple[float, float, float, float]] = {
    "adversarial": (0.80, 0.10, 0.05, 0.05),
    "control": (0.93, 0.02, 0.03, 0.02),
    "attention": (0.97, 0.00, 0.02, 0.01),
}
MEDIAN_MS, SIGMA_LOG_MS, MIN_MS = 1500.0, 0.5, 200
WORKER_PREFIX = "simulated-"


def response_probabilities(
    *, original: np.ndarray, target: np.ndarray, kind: np.ndarray
) -> np.ndarray:
    """Per item, the probability of each label '0'–'9', '?' (n × 11) under ``RESPONSE_MODEL``.

    ``target`` is −1 where a stimulus has none; ``kind`` is 'adversarial', 'control' or
    'attention' per item.
    """
    n = len(original)
    shares = np.array([RESPONSE_MODEL[k] for k in kind], dtype=np.float64).reshape(n, 4)
    rows = np.arange(n)
    has_target = (target >= 0) & (target != original)
    other = np.ones((n, 10), dtype=bool)
    other[rows, original] = False
    other[rows[has_target], target[has_target]] = False
    other_share = shares[:, 2] + np.where(has_target, 0.0, shares[:, 1])
    probs = np.zeros((n, 11), dtype=np.float64)
    probs[:, :10] = other * (other_share / other.sum(axis=1))[:, None]
    probs[rows, original] += shares[:, 0]
    probs[rows[has_target], target[has_target]] += shares[has_target, 1]
    probs[:, 10] = shares[:, 3]
    return probs


def simulated_responses(
    *, original: np.ndarray, target: np.ndarray, kind: np.ndarray, rng: np.random.Generator
) -> tuple[list[str], list[int]]:
    """Draw one label and one response time (ms) per item from the response model."""
    probs = response_probabilities(original=original, target=target, kind=kind)
    u = rng.random(len(original))
    choice = (u[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(max=10)
    ms = rng.lognormal(np.log(MEDIAN_MS), SIGMA_LOG_MS, size=len(original))
    ms = np.clip(np.rint(ms), MIN_MS, MAX_RESPONSE_MS).astype(np.int64)
    return [Answer.LABELS[c] for c in choice.tolist()], ms.tolist()


def _answers_for(lease: Lease, seed: int) -> list[dict]:
    """The simulated worker's answers to every item of the lease, in grid order."""
    items = list(
        lease.assignment.items.order_by("position").values_list(
            "key", "is_attention", "is_filler", "stimulus__set__kind", "stimulus__original_label",
            "stimulus__target",
        )
    )  # fmt: skip
    clean = np.array([row[1] or row[2] for row in items], dtype=bool)  # checks and fillers
    adversarial = np.array([row[3] == StimulusSet.Kind.ADVERSARIAL for row in items], dtype=bool)
    kind = np.where(clean, "attention", np.where(adversarial, "adversarial", "control"))
    original = np.array([row[4] for row in items], dtype=np.int64)
    target = np.array([-1 if row[5] is None else row[5] for row in items], dtype=np.int64)
    rng = np.random.default_rng([seed, lease.assignment.index])
    labels, ms = simulated_responses(original=original, target=target, kind=kind, rng=rng)
    return [
        {"item": row[0], "label": label, "ms": t}
        for row, label, t in zip(items, labels, ms, strict=True)
    ]


def _mark_study(study: Study) -> None:
    if not study.simulated:
        Study.objects.filter(pk=study.pk).update(simulated=True)
        study.simulated = True


def workers_simulate(*, study: Study, n: int, seed: int = 0) -> int:
    """Let ``n`` new simulated workers each do one assignment of an open study; how many submitted.

    Stops early when the study is full. Workers are ``simulated-1``, ``simulated-2``, …; an id
    that already did (or lost) an assignment of this study, or belongs to a real worker, is
    skipped, so repeated calls add new workers; an unfinished simulated lease is completed.
    """
    if study.status != Study.Status.OPEN:
        raise errors.StudyError(
            f"study {study.name} is {study.status}; open it to simulate workers"
        )
    if n < 0 or seed < 0:
        raise errors.StudyError(f"workers and seed must not be negative, got {n} and {seed}")
    submitted, k = 0, 0
    while submitted < n:
        k += 1
        worker, created = Worker.objects.get_or_create(
            external_id=f"{WORKER_PREFIX}{k}", defaults={"simulated": True}
        )
        done = Lease.objects.filter(study=study, worker=worker).exclude(status=Lease.Status.ACTIVE)
        if not worker.simulated or done.exists():
            continue
        try:
            lease = lease_acquire(study=study, worker_id=worker.external_id)
        except errors.StudyFull:
            if created:
                worker.delete()  # nothing refers to it yet
            break
        _mark_study(study)  # before the first answer is written
        lease_serve(lease)  # what the labeling page fetches (a "served" event)
        answers = _answers_for(lease, seed)
        half = len(answers) // 2
        answers_save(lease=lease, answers=answers[:half])
        answers_save(lease=lease, answers=answers[half:])
        lease_submit(lease=lease)
        submitted += 1
    return submitted
