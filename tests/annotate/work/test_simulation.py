"""Simulated workers: the real services, marked rows, a seeded response model, a full study."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.errors import StudyError
from annotate.management.commands.demo import Command as DemoCommand
from annotate.models import Answer, Event, Lease, StimulusSet, Study, Worker
from annotate.work.answers import MAX_RESPONSE_MS
from annotate.work.simulation import (
    MEDIAN_MS,
    MIN_MS,
    RESPONSE_MODEL,
    SIGMA_LOG_MS,
    response_probabilities,
    simulated_responses,
    worker_probabilities,
    workers_simulate,
)
from tests.annotate.factories import make_set, make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def sets() -> list[StimulusSet]:
    """An adversarial set, its clean control and attention checks (sources 0–11, 100–103)."""
    return [
        make_set(12, name="adv"),
        make_set(12, name="adv-clean", kind=StimulusSet.Kind.CLEAN),
        make_set(4, name="checks", kind=StimulusSet.Kind.ATTENTION, first_source=100),
    ]


def study_of(sets, name: str, **kw) -> Study:
    return make_study(sets[:2], n_assignments=6, size=5, attention=sets[2], name=name, **kw)


def labels_by_item(study: Study) -> dict[tuple[int, int], str]:
    answers = Answer.objects.filter(lease__study=study).values_list(
        "lease__assignment__index", "item__position", "label"
    )
    return {(a, p): label for a, p, label in answers}


def test_workers_submit_through_the_services_and_everything_is_marked(sets):
    study = study_of(sets, "s")
    assert workers_simulate(study=study, n=4, seed=0) == 4
    leases = Lease.objects.filter(study=study)
    assert leases.count() == 4 and {lease.status for lease in leases} == {"submitted"}
    for lease in leases:
        items = set(lease.assignment.items.values_list("pk", flat=True))
        assert set(lease.answers.values_list("item_id", flat=True)) == items
        assert all(
            200 <= ms <= 3_600_000 for ms in lease.answers.values_list("response_ms", flat=True)
        )
    workers = Worker.objects.filter(leases__study=study)
    assert sorted(w.external_id for w in workers) == [f"simulated-{k}" for k in range(1, 5)]
    assert all(w.simulated for w in workers)
    study.refresh_from_db()
    assert study.simulated
    kinds = list(Event.objects.filter(study=study).values_list("kind", flat=True))
    assert [kinds.count(k) for k in ("leased", "served", "saved", "submitted")] == [4, 4, 8, 4]


def test_the_same_seed_gives_the_same_labels_and_another_seed_others(sets):
    first, second, third = (study_of(sets, name) for name in ("a", "b", "c"))
    workers_simulate(study=first, n=6, seed=7)
    workers_simulate(study=second, n=6, seed=7)
    workers_simulate(study=third, n=6, seed=8)
    assert len(labels_by_item(first)) == 30
    assert labels_by_item(first) == labels_by_item(second)
    assert labels_by_item(first) != labels_by_item(third)


def test_stops_when_the_study_is_full_and_later_calls_add_new_workers(sets):
    study = study_of(sets, "s")
    Worker.objects.create(external_id="simulated-2")  # a real person's id is left alone
    assert workers_simulate(study=study, n=2) == 2
    assert workers_simulate(study=study, n=10) == 4
    assert workers_simulate(study=study, n=1) == 0
    ids = set(Lease.objects.filter(study=study).values_list("worker__external_id", flat=True))
    assert ids == {f"simulated-{k}" for k in (1, 3, 4, 5, 6, 7)}
    assert Lease.objects.filter(study=study, status="submitted").count() == 6
    assert not Worker.objects.filter(external_id__in=["simulated-8", "simulated-9"]).exists()
    assert not Worker.objects.get(external_id="simulated-2").simulated


def test_only_open_studies_and_sensible_numbers(sets):
    for status in (Study.Status.DRAFT, Study.Status.CLOSED):
        with pytest.raises(StudyError, match=f"is {status}"):
            workers_simulate(study=study_of(sets, f"s-{status}", status=status), n=1)
    with pytest.raises(StudyError, match="negative"):
        workers_simulate(study=study_of(sets, "s"), n=1, seed=-1)
    assert not Lease.objects.exists() and not Study.objects.filter(simulated=True).exists()


def test_response_probabilities_follow_the_documented_model():
    original = np.array([3, 3, 3, 5])
    target = np.array([7, -1, -1, 3])
    kind = np.array(["adversarial", "adversarial", "attention", "control"])
    probs = response_probabilities(original=original, target=target, kind=kind)
    assert probs.shape == (4, 11) and np.allclose(probs.sum(axis=1), 1.0)
    orig, tgt, other, unsure = RESPONSE_MODEL["adversarial"]
    assert probs[0, 3] == pytest.approx(orig) and probs[0, 7] == pytest.approx(tgt)
    assert probs[0, 0] == pytest.approx(other / 8) and probs[0, 10] == pytest.approx(unsure)
    assert probs[1, 7] == pytest.approx((tgt + other) / 9)  # no target: its share is "other"
    assert probs[2, 3] == pytest.approx(RESPONSE_MODEL["attention"][0])
    assert probs[3, 3] == pytest.approx(RESPONSE_MODEL["control"][1])


def test_drawn_labels_match_the_model_frequencies():
    n = 20_000
    original, target = np.full(n, 2), np.full(n, 9)
    labels, ms = simulated_responses(
        original=original, target=target, kind=np.full(n, "adversarial"),
        rng=np.random.default_rng(0), ability_sd=0, bias_sd=0,
    )  # fmt: skip
    labels = np.array(labels)
    orig, tgt, other, unsure = RESPONSE_MODEL["adversarial"]
    assert np.mean(labels == "2") == pytest.approx(orig, abs=0.015)
    assert np.mean(labels == "9") == pytest.approx(tgt, abs=0.01)
    assert np.mean(labels == "?") == pytest.approx(unsure, abs=0.01)
    assert np.median(ms) == pytest.approx(1500, rel=0.05)


# --- per-worker effects -----------------------------------------------------------------------


def mixed_items(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random items of every kind: originals, targets (−1 for attention checks), kinds."""
    rng = np.random.default_rng(seed)
    original = rng.integers(0, 10, n)
    target = (original + rng.integers(1, 10, n)) % 10
    kind = rng.choice(["adversarial", "control", "attention"], n)
    return original, np.where(kind == "attention", -1, target), kind


def iid_responses(original, target, kind, rng) -> tuple[list[str], list[int]]:
    """The response model before per-worker effects (the reference sd 0 must reproduce)."""
    probs = response_probabilities(original=original, target=target, kind=kind)
    u = rng.random(len(original))
    choice = (u[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(max=10)
    ms = rng.lognormal(np.log(MEDIAN_MS), SIGMA_LOG_MS, size=len(original))
    ms = np.clip(np.rint(ms), MIN_MS, MAX_RESPONSE_MS).astype(np.int64)
    return [Answer.LABELS[c] for c in choice.tolist()], ms.tolist()


def test_zero_sds_give_exactly_the_labels_of_the_iid_model():
    original, target, kind = mixed_items(500, seed=1)
    for seed in range(5):
        before = iid_responses(original, target, kind, np.random.default_rng([seed, 3]))
        after = simulated_responses(
            original=original, target=target, kind=kind,
            rng=np.random.default_rng([seed, 3]), ability_sd=0, bias_sd=0,
        )  # fmt: skip
        assert after == before


def test_worker_probabilities_shift_the_log_odds_and_stay_normalised():
    original, target, kind = mixed_items(300, seed=2)
    base = response_probabilities(original=original, target=target, kind=kind)
    rng = np.random.default_rng(0)
    ability, bias = rng.normal(0, 2, 300), rng.normal(0, 2, 300)
    probs = worker_probabilities(base, original=original, target=target, ability=ability, bias=bias)
    assert probs.shape == base.shape and np.allclose(probs.sum(axis=1), 1.0)
    rows, digits = np.arange(300), np.arange(10)
    other = ((digits != original[:, None]) & (digits != target[:, None])).argmax(axis=1)

    def shift(k: np.ndarray) -> np.ndarray:  # change in the log-odds of k against "other"
        return np.log(probs[rows, k] / probs[rows, other] * base[rows, other] / base[rows, k])

    has = target >= 0
    assert np.allclose(shift(original), ability)
    assert np.allclose(shift(np.where(has, target, other))[has], bias[has])
    assert np.array_equal(  # zero effects: the base rows, bit for bit
        worker_probabilities(base, original=original, target=target, ability=0.0, bias=0.0), base
    )
    extreme = worker_probabilities(base, original=original, target=target, ability=800, bias=-800)
    assert np.isfinite(extreme).all() and np.array_equal(extreme.argmax(axis=1), original)
    with pytest.raises(ValueError, match="n × 11"):
        worker_probabilities(base[:, :10], original=original, target=target, ability=0, bias=0)


def change_shares(sd: float, *, seed: int, workers: int = 100, items: int = 40) -> np.ndarray:
    """Per simulated worker, the share of answers naming the target of adversarial items."""
    original, target = np.full(items, 3), np.full(items, 8)
    shares = []
    for k in range(workers):
        labels, _ = simulated_responses(
            original=original, target=target, kind=np.full(items, "adversarial"),
            rng=np.random.default_rng([seed, k]), ability_sd=sd, bias_sd=sd,
        )  # fmt: skip
        shares.append(np.mean(np.array(labels) == "8"))
    return np.array(shares)


def test_worker_effects_make_workers_differ_far_more_than_chance():
    iid, clustered = change_shares(0.0, seed=5), change_shares(1.0, seed=5)
    p = RESPONSE_MODEL["adversarial"][1]
    assert iid.var() == pytest.approx(p * (1 - p) / 40, rel=0.5)  # binomial noise only
    assert clustered.var() > 4 * iid.var()
    assert np.array_equal(clustered, change_shares(1.0, seed=5))  # seeded: the same again


def test_study_labels_are_reproducible_with_effects_and_iid_without(sets):
    studies = [study_of(sets, name) for name in ("a", "b", "c", "d")]
    workers_simulate(study=studies[0], n=6, seed=4, ability_sd=1.5, bias_sd=1.5)
    workers_simulate(study=studies[1], n=6, seed=4, ability_sd=1.5, bias_sd=1.5)
    workers_simulate(study=studies[2], n=6, seed=4, ability_sd=0, bias_sd=0)
    workers_simulate(study=studies[3], n=6, seed=4, ability_sd=0, bias_sd=0)
    assert labels_by_item(studies[0]) == labels_by_item(studies[1])
    assert labels_by_item(studies[2]) == labels_by_item(studies[3])
    assert labels_by_item(studies[0]) != labels_by_item(studies[2])


@pytest.mark.parametrize(
    "sds", [(-0.1, 0.5), (0.5, -1.0), (float("nan"), 0.5), (0.5, float("inf"))]
)
def test_effect_sds_must_be_non_negative_numbers(sets, sds):
    with pytest.raises(StudyError, match="sd must be a non-negative number"):
        workers_simulate(study=study_of(sets, "s"), n=1, ability_sd=sds[0], bias_sd=sds[1])
    assert not Lease.objects.exists()


def test_command_and_its_refusals(sets):
    study_of(sets, "s")
    study_of(sets, "closed", status=Study.Status.CLOSED)
    out = io.StringIO()
    call_command("simulate_workers", "--study", "s", "--workers", "8", "--seed", "3", stdout=out)
    assert "6 simulated workers" in out.getvalue() and "full" in out.getvalue()
    for args, message in [
        (["--study", "nope", "--workers", "1"], "no study named nope"),
        (["--study", "closed", "--workers", "1"], "is closed"),
        (["--study", "s", "--workers", "0"], "must be positive"),
        (["--study", "s", "--workers", "1", "--seed", "-2"], "negative"),
        (["--study", "s", "--workers", "1", "--ability-sd", "-1"], "ability sd must be"),
        (["--study", "s", "--workers", "1", "--bias-sd", "nan"], "bias sd must be"),
        (["--study", "s", "--workers", "1", "--bias-sd", "wide"], "invalid float value"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("simulate_workers", *args, stdout=io.StringIO())


def test_demo_tops_the_study_up_to_n_simulated_workers(sets):
    study = study_of(sets, "demo")
    out = io.StringIO()
    command = DemoCommand(stdout=out)
    command._simulate(study, 2)
    command._simulate(study, 2)
    command._simulate(study, 3)
    assert Lease.objects.filter(study=study, worker__simulated=True).count() == 3
    assert "SIMULATED answers: 3 simulated workers have submitted (1 new)" in out.getvalue()
