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
from annotate.work.simulation import (
    RESPONSE_MODEL,
    response_probabilities,
    simulated_responses,
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
        rng=np.random.default_rng(0),
    )  # fmt: skip
    labels = np.array(labels)
    orig, tgt, other, unsure = RESPONSE_MODEL["adversarial"]
    assert np.mean(labels == "2") == pytest.approx(orig, abs=0.015)
    assert np.mean(labels == "9") == pytest.approx(tgt, abs=0.01)
    assert np.mean(labels == "?") == pytest.approx(unsure, abs=0.01)
    assert np.median(ms) == pytest.approx(1500, rel=0.05)


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
