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
(median 1.5 s, σ 0.5 in log space), clipped to 0.2 s … 1 h.

Workers differ, so answers cluster by worker. Each simulated worker draws an *ability*
a ~ N(0, ``ability_sd``) and a *bias toward the target* b ~ N(0, ``bias_sd``), added on the
multinomial-logit scale to every item's log-probability of the original and of the target
(:func:`worker_probabilities`): a shifts the log-odds of the original, b those of the target,
against each answer but the other of the two. The defaults, 0.5 each (ICC ≈ 0.07 on the logit
scale), keep the mean shares within 2 points of the table (adversarial ≈ 0.78 / 0.11 / 0.05 /
0.05); sd 1 moves them further (0.74 / 0.15 / 0.06 / 0.06); sd 0 is the table's i.i.d. model.

Draws come from ``numpy.random.default_rng([seed, assignment index])`` (labels, times, then the
worker's effects, so any sd keeps the same uniforms), so a given seed gives the same labels for
the same assignment whichever simulated worker happens to lease it.
"""

from __future__ import annotations

import math

import numpy as np

from annotate import errors
from annotate.labels import MAX_DIGIT
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
ABILITY_SD, BIAS_SD = 0.5, 0.5  # per-worker effects: sd on the logit scale (see above)
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


def worker_probabilities(
    probs: np.ndarray,
    *,
    original: np.ndarray,
    target: np.ndarray,
    ability: np.ndarray | float,
    bias: np.ndarray | float,
) -> np.ndarray:
    """``probs`` (n × 11, from :func:`response_probabilities`) as one worker answers them.

    Per item, ``ability`` is added to the original's log-probability and ``bias`` to the
    target's (none where ``target`` is −1 or the original), then each row is renormalised.
    Rows whose effects are zero come back unchanged, bit for bit.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    if probs.shape != (n, 11):
        raise ValueError(f"probs must be n × 11, got {probs.shape}")
    original = np.asarray(original, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    ability = np.broadcast_to(np.asarray(ability, dtype=np.float64), (n,))
    bias = np.broadcast_to(np.asarray(bias, dtype=np.float64), (n,))
    rows = np.arange(n)
    has_target = (target >= 0) & (target <= MAX_DIGIT) & (target != original)
    shift = np.zeros((n, 11))
    shift[rows, original] = ability
    shift[rows[has_target], target[has_target]] += bias[has_target]
    weighted = probs * np.exp(shift - shift.max(axis=1, keepdims=True))  # no overflow
    adjusted = weighted / weighted.sum(axis=1, keepdims=True)
    unchanged = (ability == 0) & ((bias == 0) | ~has_target)
    return np.where(unchanged[:, None], probs, adjusted)


def simulated_responses(
    *,
    original: np.ndarray,
    target: np.ndarray,
    kind: np.ndarray,
    rng: np.random.Generator,
    ability_sd: float = ABILITY_SD,
    bias_sd: float = BIAS_SD,
) -> tuple[list[str], list[int]]:
    """One worker's label and response time (ms) per item: the response model, shifted by the
    worker's effects (drawn last, so sd 0 gives exactly the i.i.d. model's labels)."""
    probs = response_probabilities(original=original, target=target, kind=kind)
    u = rng.random(len(original))
    ms = rng.lognormal(np.log(MEDIAN_MS), SIGMA_LOG_MS, size=len(original))
    ms = np.clip(np.rint(ms), MIN_MS, MAX_RESPONSE_MS).astype(np.int64)
    ability, bias = rng.standard_normal(2) * (ability_sd, bias_sd)
    probs = worker_probabilities(
        probs, original=original, target=target, ability=ability, bias=bias
    )
    choice = (u[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(max=10)
    return [Answer.LABELS[c] for c in choice.tolist()], ms.tolist()


def _answers_for(lease: Lease, seed: int, *, ability_sd: float, bias_sd: float) -> list[dict]:
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
    labels, ms = simulated_responses(
        original=original, target=target, kind=kind, rng=rng, ability_sd=ability_sd, bias_sd=bias_sd
    )
    return [
        {"item": row[0], "label": label, "ms": t}
        for row, label, t in zip(items, labels, ms, strict=True)
    ]


def _mark_study(study: Study) -> None:
    if not study.simulated:
        Study.objects.filter(pk=study.pk).update(simulated=True)
        study.simulated = True


def workers_simulate(
    *,
    study: Study,
    n: int,
    seed: int = 0,
    ability_sd: float = ABILITY_SD,
    bias_sd: float = BIAS_SD,
) -> int:
    """Let ``n`` new simulated workers each do one assignment of an open study; how many submitted.

    Each worker has its own ability and bias toward the target (sds on the logit scale, ≥ 0).

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
    for name, sd in (("ability", ability_sd), ("bias", bias_sd)):
        if not (math.isfinite(sd) and sd >= 0):
            raise errors.StudyError(f"the {name} sd must be a non-negative number, got {sd}")
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
        answers = _answers_for(lease, seed, ability_sd=ability_sd, bias_sd=bias_sd)
        half = len(answers) // 2
        answers_save(lease=lease, answers=answers[:half])
        answers_save(lease=lease, answers=answers[half:])
        lease_submit(lease=lease)
        submitted += 1
    return submitted
