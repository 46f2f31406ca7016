"""Study designs: properties of the plans on synthetic arrays (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from annotate.studies.design import ATTENTION, ATTENTION_CODE, plan_study


def conditions(n_conditions: int, n: int, *, seed: int = 0) -> tuple[list, list]:
    """``n_conditions`` sets over the same ``n`` sources with random (shared) labels."""
    labels = np.random.default_rng(seed).integers(0, 10, n)
    return [np.arange(n)] * n_conditions, [labels] * n_conditions


def counts(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.int64)
    np.add.at(out, (rows, cols), 1)
    return out


def spread(table: np.ndarray, axis: int = 0) -> int:
    """Largest max − min along ``axis`` (0: across assignments, per column)."""
    return int((table.max(axis=axis) - table.min(axis=axis)).max())


def test_partition_of_ten_thousand_images_gives_400_assignments_of_25():
    sources, labels = conditions(3, 10_000)
    plan = plan_study(design="partition", sources=sources, labels=labels, size=25, seed=0)
    assert plan.n_assignments == 400
    assert (np.bincount(plan.assignment) == 25).all()
    # Each source exactly once, in one condition.
    assert np.array_equal(np.sort(plan.source), np.arange(10_000))
    cls = labels[0][plan.source]
    # Condition × class counts balanced within ±1 for every class ...
    assert spread(counts(cls, plan.condition, (10, 3)), axis=1) <= 1
    # ... and conditions and classes within ±1 across assignments.
    assert spread(counts(plan.assignment, plan.condition, (400, 3))) <= 1
    assert spread(counts(plan.assignment, cls, (400, 10))) <= 1
    assert (plan.block == np.arange(400)).all() and (plan.replicate == 0).all()


@pytest.mark.parametrize("n_conditions", [1, 2, 4, 5])
def test_partition_balance_when_sizes_do_not_divide(n_conditions):
    sources, labels = conditions(n_conditions, 997, seed=n_conditions)
    plan = plan_study(
        design="partition",
        sources=sources,
        labels=labels,
        size=23,
        attention_checks=2,
        attention_pool=np.arange(2000, 2040),
        seed=1,
    )
    study = plan.condition >= 0
    n = plan.n_assignments
    assert n == -(-997 // 21)
    sizes = np.bincount(plan.assignment[study], minlength=n)
    assert sizes.max() - sizes.min() <= 1 and sizes.max() <= 21
    assert np.array_equal(np.sort(plan.source[study]), np.arange(997))
    cls = labels[0][plan.source[study]]
    shape = (n, n_conditions)
    assert spread(counts(plan.assignment[study], plan.condition[study], shape)) <= 1
    assert spread(counts(plan.assignment[study], cls, (n, 10))) <= 1
    assert spread(counts(cls, plan.condition[study], (10, n_conditions)), axis=1) <= 1


def test_partition_uses_only_sources_common_to_all_conditions():
    labels = np.arange(200) % 10
    sources = [np.arange(0, 150), np.arange(20, 200), np.arange(200)]
    plan = plan_study(
        design="partition",
        sources=sources,
        labels=[labels[s] for s in sources],
        size=10,
        attention_checks=0,
    )
    assert np.array_equal(plan.sources, np.arange(20, 150))
    assert np.array_equal(np.sort(plan.source), np.arange(20, 150))
    assert np.array_equal(plan.dropped, np.r_[0:20, 150:200])
    assert plan.summary()["dropped_sources"] == 70


def test_limit_takes_the_lowest_common_sources():
    sources, labels = conditions(2, 300)
    plan = plan_study(design="partition", sources=sources, labels=labels, size=10, limit=50)
    assert np.array_equal(np.sort(plan.source), np.arange(50))


@pytest.mark.parametrize("design", ["partition", "full"])
def test_plans_are_reproducible_by_seed_and_differ_between_seeds(design):
    sources, labels = conditions(3, 120)
    kw = dict(
        design=design,
        sources=sources,
        labels=labels,
        size=12,
        attention_checks=2,
        attention_pool=np.arange(500, 520),
        raters=2,
    )
    a, b, c = plan_study(**kw, seed=7), plan_study(**kw, seed=7), plan_study(**kw, seed=8)
    for column in ("assignment", "position", "condition", "source", "block", "replicate"):
        assert np.array_equal(getattr(a, column), getattr(b, column))
    assert a.digest() == b.digest() and a.summary() == b.summary()
    assert a.digest() != c.digest()
    assert not np.array_equal(a.source, c.source)


@pytest.mark.parametrize("raters", [1, 3])
def test_full_design_shows_every_pair_k_times_never_two_versions_together(raters):
    n_conditions, n = 3, 95
    sources, labels = conditions(n_conditions, n)
    plan = plan_study(
        design="full",
        sources=sources,
        labels=labels,
        size=12,
        attention_checks=2,
        attention_pool=np.arange(1000, 1010),
        raters=raters,
        seed=3,
    )
    study = plan.condition >= 0
    pairs = counts(plan.condition[study], plan.source[study], (n_conditions, n))
    assert (pairs == raters).all()
    per = 10
    assert plan.n_assignments == -(-n // per) * n_conditions * raters
    # No assignment holds the same source twice (so never two versions of it).
    key = plan.assignment[study] * n + plan.source[study]
    assert len(np.unique(key)) == len(key)
    # Conditions balanced inside every assignment.
    table = counts(plan.assignment[study], plan.condition[study], (plan.n_assignments, 3))
    assert spread(table, axis=1) <= 1
    # Same block ⇔ overlapping sources.
    member = counts(plan.assignment[study], plan.source[study], (plan.n_assignments, n)) > 0
    overlap = (member.astype(int) @ member.T.astype(int)) > 0
    same_block = plan.block[:, None] == plan.block[None, :]
    assert np.array_equal(overlap, same_block)


def test_rater_copies_hold_the_same_items_in_their_own_order():
    sources, labels = conditions(2, 60)
    plan = plan_study(design="partition", sources=sources, labels=labels, size=20, raters=3, seed=5)
    base = plan.n_assignments // 3
    assert list(plan.replicate) == [0] * base + [1] * base + [2] * base
    views = plan.assignments
    for a in range(base):
        copies = [views[a + r * base] for r in range(3)]
        assert len({c.block for c in copies}) == 1
        contents = [sorted((e.condition, e.source) for e in c.entries) for c in copies]
        assert contents[0] == contents[1] == contents[2]
        orders = {tuple((e.condition, e.source) for e in c.entries) for c in copies}
        assert len(orders) > 1


def test_attention_checks_are_distinct_spread_over_the_pool_and_shuffled_in():
    sources, labels = conditions(2, 400)
    pool = np.arange(900, 913)
    plan = plan_study(
        design="partition",
        sources=sources,
        labels=labels,
        size=25,
        attention_checks=3,
        attention_pool=pool,
        seed=2,
    )
    checks = plan.condition == ATTENTION_CODE
    drawn = plan.condition < 0  # checks and fillers come from the one pool
    per_assignment = np.bincount(plan.assignment[checks], minlength=plan.n_assignments)
    assert (per_assignment == 3).all()
    assert np.isin(plan.source[drawn], pool).all()
    key = plan.assignment[drawn] * 10_000 + plan.source[drawn]
    assert len(np.unique(key)) == len(key)
    uses = np.bincount(plan.source[drawn] - pool[0], minlength=len(pool))
    assert uses.max() - uses.min() <= 1
    # Positions are a permutation of 0 … n−1 in every assignment, rows sorted by them.
    for view in plan.assignments:
        positions = [e.position for e in view.entries]
        assert positions == list(range(len(view.entries)))
    # Checks are not parked at one place.
    assert len(np.unique(plan.position[checks])) > 5


def test_dataclass_view_matches_the_columns():
    sources, labels = conditions(2, 30)
    plan = plan_study(
        design="full",
        sources=sources,
        labels=labels,
        size=6,
        attention_checks=1,
        attention_pool=np.arange(100, 105),
    )
    entries = [e for view in plan.assignments for e in view.entries]
    assert [e.source for e in entries] == plan.source.tolist()
    assert [e.condition == ATTENTION for e in entries] == (plan.condition < 0).tolist()
    assert [v.block for v in plan.assignments] == plan.block.tolist()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(design="latin"), "unknown design"),
        (dict(size=3, attention_checks=3), "attention checks < size"),
        (dict(attention_checks=2, attention_pool=np.array([100])), "distinct attention"),
        (dict(attention_checks=1, attention_pool=np.array([5, 100])), "share source"),
        (dict(raters=0), "raters"),
        (dict(limit=0), "limit"),
    ],
)
def test_bad_arguments_raise_value_errors(kw, message):
    sources, labels = conditions(2, 20)
    args = dict(design="partition", sources=sources, labels=labels, size=5) | kw
    with pytest.raises(ValueError, match=message):
        plan_study(**args)


def test_disjoint_or_disagreeing_sets_are_refused():
    with pytest.raises(ValueError, match="no source image in common"):
        plan_study(
            design="partition",
            sources=[np.arange(10), np.arange(10, 20)],
            labels=[np.zeros(10, int), np.zeros(10, int)],
        )
    with pytest.raises(ValueError, match="disagree"):
        plan_study(
            design="partition",
            sources=[np.arange(10), np.arange(10)],
            labels=[np.zeros(10, int), np.ones(10, int)],
        )
