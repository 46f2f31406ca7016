"""Exactly ``size`` images in every assignment (finding 7 of the hostile-worker review).

The demo's assignments once held 23–24 items while the page promised 25: the sources did not
divide evenly. Fillers from the attention pool now complete every assignment, recorded as
fillers and kept out of the analysis; a study may instead allow short assignments.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.db.models import Count
from django.urls import reverse

from annotate.analysis.selectors import responses_arrays
from annotate.models import Assignment, Item, StimulusSet
from annotate.studies.creation import study_create
from annotate.studies.design import ATTENTION_CODE, FILLER_CODE, max_fillers, plan_study
from annotate.studies.lifecycle import study_open
from annotate.studies.spec import StudySpec
from tests.annotate.factories import make_model_row, make_set, work


def demo_like(**kw):
    """300 sources in three conditions, 25 per assignment with two checks (as `make demo`)."""
    labels = np.random.default_rng(0).integers(0, 10, 300)
    return plan_study(
        design=kw.pop("design", "partition"),
        sources=[np.arange(300)] * 3,
        labels=[labels] * 3,
        size=25,
        attention_checks=2,
        attention_pool=np.arange(1000, 1050),
        seed=0,
        **kw,
    )


@pytest.mark.parametrize("design", ["partition", "full"])
def test_every_assignment_holds_exactly_size_items(design):
    plan = demo_like(design=design)
    assert (np.bincount(plan.assignment) == 25).all()
    checks = np.bincount(plan.assignment[plan.condition == ATTENTION_CODE])
    assert (checks == 2).all()
    fillers = plan.condition == FILLER_CODE
    assert fillers.any() and plan.summary()["filler_items"] == int(fillers.sum())
    pool_items = plan.condition < 0  # checks and fillers: distinct within an assignment
    key = plan.assignment[pool_items] * 10_000 + plan.source[pool_items]
    assert len(np.unique(key)) == len(key)
    assert np.isin(plan.source[pool_items], np.arange(1000, 1050)).all()
    study = plan.condition >= 0
    if design == "partition":  # every source still exactly once
        assert np.array_equal(np.sort(plan.source[study]), np.arange(300))
    assert np.bincount(plan.assignment[fillers]).max() <= max_fillers(300, 23)


def test_short_assignments_only_when_the_study_allows_them():
    plan = demo_like(allow_short=True)
    sizes = np.bincount(plan.assignment)
    assert sizes.max() <= 25 and sizes.min() < 25
    assert not (plan.condition == FILLER_CODE).any()


def test_without_a_pool_large_enough_uneven_sources_are_refused():
    labels = np.zeros(30, int)
    with pytest.raises(ValueError, match="fillers"):
        plan_study(design="partition", sources=[np.arange(30)], labels=[labels], size=25)
    plan = plan_study(
        design="partition", sources=[np.arange(50)], labels=[np.zeros(50, int)], size=25
    )
    assert (np.bincount(plan.assignment) == 25).all()  # even: no pool needed


def test_max_fillers_matches_the_plans():
    for n in (1, 24, 25, 26, 49, 300, 10_000):
        labels = np.arange(n) % 10
        plan = plan_study(
            design="partition", sources=[np.arange(n)], labels=[labels], size=25,
            attention_pool=np.arange(20_000, 20_030),
        )  # fmt: skip
        fillers = np.bincount(plan.assignment[plan.condition == FILLER_CODE], minlength=1)
        assert fillers.max() == max_fillers(n, 25)


@pytest.mark.django_db
def test_a_created_study_fills_its_grids_and_its_pages_say_how_many(client):
    model = make_model_row()
    sets = [make_set(31, model=model, name=f"c{k}") for k in range(2)]
    checks = make_set(20, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=500)
    spec = StudySpec(
        name="filled", sets=[s.name for s in sets], size=10, attention_checks=1,
        attention_set=checks.name,
    )  # fmt: skip
    study = study_create(spec=spec)
    sizes = Assignment.objects.filter(study=study).annotate(n=Count("items"))
    assert {a.n for a in sizes} == {10}
    fillers = Item.objects.filter(assignment__study=study, is_filler=True)
    assert fillers.count() == study.config["plan"]["filler_items"] > 0
    assert not fillers.filter(condition__isnull=False).exists()
    assert set(fillers.values_list("stimulus__set", flat=True)) == {checks.pk}

    study_open(study=study)
    page = client.get(reverse("annotate:study-entry", args=[study.key])).content.decode()
    assert "You will see 10 small images" in page
    lease = work(study, "w1")
    analysed = responses_arrays(study=study)
    answered = lease.answers.count()
    assert (
        answered == 10
        and len(analysed["label"])
        == answered - lease.assignment.items.filter(is_filler=True).count()
    )


@pytest.mark.django_db
def test_a_study_that_allows_short_assignments_says_up_to(client):
    make_set(31, name="c0")
    spec = StudySpec(name="short", sets=["c0"], size=10, attention_checks=0, allow_short=True)
    study = study_open(study=study_create(spec=spec))
    page = client.get(reverse("annotate:study-entry", args=[study.key])).content.decode()
    assert "You will see up to 10 small images" in page
    assert not Item.objects.filter(assignment__study=study, is_filler=True).exists()
