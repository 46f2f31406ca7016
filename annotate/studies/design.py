"""Study designs as pure functions over arrays: which source image, in which condition, where.

No Django here: :func:`plan_study` takes each condition's source indices and original labels,
the attention pool and a seed, and returns a :class:`Plan` that ``annotate.studies`` turns into
rows. Everything follows from the seed (``np.random.default_rng``), so a recorded seed rebuilds
the same study.

Designs
    ``partition`` (thesis): each source image common to all conditions is shown once, in one
    condition; conditions are balanced within every original class and within every assignment.
    ``full``: every image of every condition; sources are grouped into blocks and a block's
    ``C`` assignments rotate the conditions as a Latin square, so no assignment holds two
    versions of one source image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final, Literal

import numpy as np

DESIGNS = ("partition", "full")
ATTENTION: Final = "attention"
# Bump when an algorithm below changes what a seed produces: it is part of a study's config.
# 2: assignments are filled to their size with filler digits from the attention pool.
DESIGN_VERSION = 2
ATTENTION_CODE, FILLER_CODE = -1, -2  # Plan.condition of attention checks and of fillers


FILLER: Final = "filler"


@dataclass(frozen=True)
class Entry:
    """One cell of an assignment: a source image in a condition, an attention check, or a
    filler (a clean digit from the attention pool that completes a short assignment)."""

    condition: int | Literal["attention", "filler"]
    source: int
    position: int


@dataclass(frozen=True)
class PlannedAssignment:
    """An assignment of the plan: its block, which rater copy it is, and its ordered entries."""

    index: int
    block: int
    replicate: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, eq=False)
class Plan:
    """A whole study layout in columns, one row per item, sorted by (assignment, position).

    ``condition`` is −1 for attention checks and −2 for fillers, whose ``source`` indexes the
    attention pool's source images; ``block`` and ``replicate`` have one entry per assignment.
    """

    design: str
    seed: int
    assignment: np.ndarray
    position: np.ndarray
    condition: np.ndarray
    source: np.ndarray
    block: np.ndarray
    replicate: np.ndarray
    sources: np.ndarray = field(repr=False)
    dropped: np.ndarray = field(repr=False)

    @property
    def n_assignments(self) -> int:
        return len(self.block)

    @cached_property
    def assignments(self) -> tuple[PlannedAssignment, ...]:
        """The plan as dataclasses (for reading and tests; the columns are what code uses)."""
        bounds = np.searchsorted(self.assignment, np.arange(self.n_assignments + 1))
        rows = zip(
            self.condition.tolist(), self.source.tolist(), self.position.tolist(), strict=True
        )
        kinds = {ATTENTION_CODE: ATTENTION, FILLER_CODE: FILLER}
        entries = [Entry(kinds.get(c, c), s, p) for c, s, p in rows]
        return tuple(
            PlannedAssignment(
                index=a,
                block=int(self.block[a]),
                replicate=int(self.replicate[a]),
                entries=tuple(entries[bounds[a] : bounds[a + 1]]),
            )
            for a in range(self.n_assignments)
        )

    def digest(self) -> str:
        """SHA-256 of the layout columns: equal digests mean identical studies."""
        h = hashlib.sha256()
        columns = (self.assignment, self.position, self.condition, self.source)
        for column in (*columns, self.block, self.replicate):
            h.update(np.ascontiguousarray(column, dtype=np.int64).tobytes())
        return h.hexdigest()

    def summary(self) -> dict[str, int | str]:
        """Counts worth freezing in a study's config (plain JSON types)."""
        attention = int((self.condition == ATTENTION_CODE).sum())
        fillers = int((self.condition == FILLER_CODE).sum())
        return {
            "design_version": DESIGN_VERSION,
            "assignments": self.n_assignments,
            "blocks": int(len(np.unique(self.block))),
            "items": int(len(self.assignment)),
            "study_items": int(len(self.assignment)) - attention - fillers,
            "attention_items": attention,
            "filler_items": fillers,
            "sources": int(len(self.sources)),
            "dropped_sources": int(len(self.dropped)),
            "digest": self.digest(),
        }


def common_sources(
    sources: Sequence[np.ndarray], labels: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices present in every condition (sorted), their labels, and the dropped rest.

    Labels come from the first condition; a source whose label differs between conditions
    means the sets were not built on the same data, which is an error.
    """
    common = sources[0]
    for s in sources[1:]:
        common = np.intersect1d(common, s)
    common = np.unique(common)
    every = np.unique(np.concatenate([np.asarray(s) for s in sources]))
    dropped = np.setdiff1d(every, common)
    common_labels = []
    for s, lab in zip(sources, labels, strict=True):
        s, lab = np.asarray(s), np.asarray(lab)
        order = np.argsort(s, kind="stable")
        common_labels.append(lab[order][np.searchsorted(s[order], common)])
    for other in common_labels[1:]:
        if not np.array_equal(other, common_labels[0]):
            raise ValueError("the sets disagree on the original label of some source images")
    return common, common_labels[0].astype(np.int64), dropped


def assign_conditions(
    labels: np.ndarray, n_conditions: int, rng: np.random.Generator
) -> np.ndarray:
    """Give each source one condition, balanced (±1) within every class and overall.

    Sources are sorted by (class, random key) and conditions dealt round-robin along that order,
    through a random permutation of the condition numbers.
    """
    order = np.lexsort((rng.random(len(labels)), labels))
    perm = rng.permutation(n_conditions)
    condition = np.empty(len(labels), dtype=np.int64)
    condition[order] = perm[np.arange(len(labels)) % n_conditions]
    return condition


def deal(
    condition: np.ndarray,
    labels: np.ndarray,
    n_groups: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Deal items into ``n_groups`` groups with sizes, conditions and classes each balanced ±1.

    Sizes and per-condition counts are fixed first (a condition-major sequence dealt
    round-robin); each condition's items then fill its slots class by class, lowest class count
    first, and :func:`_rebalance_classes` swaps items of one condition between groups until
    every class is within ±1 too. Loops run over cells, rounds and swaps, never over items.
    """
    n_conditions = int(condition.max()) + 1
    n_classes = int(labels.max()) + 1
    counts = np.bincount(condition, minlength=n_conditions)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    offset = int(rng.integers(n_groups))
    group = np.empty(len(labels), dtype=np.int64)
    by_class = np.zeros((n_classes, n_groups), dtype=np.int64)
    for k in range(n_conditions):
        quota = np.bincount(
            (starts[k] + np.arange(counts[k]) + offset) % n_groups, minlength=n_groups
        )
        of_k = np.flatnonzero(condition == k)
        for c in rng.permutation(n_classes):
            members = rng.permutation(of_k[labels[of_k] == c])
            done = 0
            while done < len(members):  # one round gives each open group at most one item
                open_ = np.flatnonzero(quota > 0)
                keys = (rng.random(len(open_)), -quota[open_], by_class[c, open_])
                take = open_[np.lexsort(keys)][: len(members) - done]
                group[members[done : done + len(take)]] = take
                quota[take] -= 1
                by_class[c, take] += 1
                done += len(take)
    _rebalance_classes(group, condition, labels, by_class)
    return group


def _rebalance_classes(
    group: np.ndarray, condition: np.ndarray, labels: np.ndarray, by_class: np.ndarray
) -> None:
    """Swap same-condition items between groups (in place) until each class spreads by ≤ 1.

    A swap moves class ``c`` from a group holding most of it to one holding least, against an
    item of a class ``d`` that the second group holds more of: sizes, condition counts and
    every other spread are unchanged or better, and Σ counts² falls, so this terminates.
    """
    stuck: set[int] = set()
    while True:
        spread = by_class.max(axis=1) - by_class.min(axis=1)
        spread[list(stuck)] = 0
        c = int(np.argmax(spread))
        if spread[c] <= 1:
            return
        lows = np.flatnonzero(by_class[c] == by_class[c].min())
        for a in np.flatnonzero(by_class[c] == by_class[c].max()):
            mine = np.flatnonzero((group == a) & (labels == c))
            theirs = np.flatnonzero(
                np.isin(group, lows) & (labels != c) & np.isin(condition, condition[mine])
            )
            gain = by_class[labels[theirs], group[theirs]] - by_class[labels[theirs], a]
            if not len(theirs) or gain.max() < 1:
                continue
            j = theirs[np.argmax(gain)]
            i = mine[np.argmax(condition[mine] == condition[j])]
            b, d = group[j], labels[j]
            group[i], group[j] = b, a
            by_class[c, a] -= 1
            by_class[c, b] += 1
            by_class[d, a] += 1
            by_class[d, b] -= 1
            break
        else:
            stuck.add(c)


def _latin_blocks(
    labels: np.ndarray, n_conditions: int, per: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The full design: rows (assignment, condition, source position, block) before checks.

    Sources are dealt into class-balanced blocks of at most ``per``; assignment ``j`` of a block
    shows its ``i``-th source in condition ``perm[(i + j) mod C]``.
    """
    n = len(labels)
    n_blocks = -(-n // per)
    block_of = deal(np.zeros(n, dtype=np.int64), labels, n_blocks, rng)
    # Rank of each source inside its block (blocks in order, sources in a random order).
    order = np.lexsort((rng.random(n), block_of))
    starts = np.searchsorted(block_of[order], np.arange(n_blocks))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[block_of[order]]
    perms = np.argsort(rng.random((n_blocks, n_conditions)), axis=1)
    j = np.arange(n_conditions)
    # Rows: every source × every rotation j of its block.
    src = np.repeat(np.arange(n), n_conditions)
    jj = np.tile(j, n)
    cond = perms[block_of[src], (rank[src] + jj) % n_conditions]
    assignment = block_of[src] * n_conditions + jj
    blocks = np.repeat(np.arange(n_blocks), n_conditions)
    return assignment, cond, src, blocks


def max_fillers(n_sources: int, per: int) -> int:
    """The most fillers an assignment of ``per`` study items needs for ``n_sources`` sources:
    both designs deal sources into ``ceil(n / per)`` groups as even as possible."""
    if n_sources < 1 or per < 1:
        return 0
    return per - n_sources // -(-n_sources // per)


def plan_study(
    *,
    design: str,
    sources: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    size: int = 25,
    attention_checks: int = 0,
    attention_pool: np.ndarray | None = None,
    raters: int = 1,
    seed: int = 0,
    limit: int | None = None,
    allow_short: bool = False,
) -> Plan:
    """Lay out a study over ``len(sources)`` conditions; see the module docstring for designs.

    ``sources[k]``/``labels[k]`` are condition k's source indices and original classes. Only
    sources common to all conditions are used (the rest are reported as ``dropped``); with
    ``limit``, only the lowest ``limit`` of them. Every assignment holds exactly ``size``
    items: ``size − attention_checks`` study items when the sources divide evenly (one fewer in
    some assignments otherwise), ``attention_checks`` distinct sources of ``attention_pool``,
    and fillers from the same pool completing the short ones, all shuffled; each assignment is
    copied ``raters`` times. With ``allow_short`` there are no fillers and an assignment may
    hold one study item fewer than another.
    """
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; choose from {', '.join(DESIGNS)}")
    if not sources:
        raise ValueError("a study needs at least one condition")
    if size < 1 or attention_checks < 0 or attention_checks >= size:
        raise ValueError(f"need 0 ≤ attention checks < size, got {attention_checks} and {size}")
    if raters < 1:
        raise ValueError(f"raters must be positive, got {raters}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    pool = np.unique(np.asarray(attention_pool if attention_pool is not None else [], np.int64))
    if len(pool) < attention_checks:
        raise ValueError(
            f"{attention_checks} attention checks per assignment need as many distinct "
            f"attention images, got {len(pool)}"
        )
    common, common_labels, dropped = common_sources(sources, labels)
    if limit is not None:
        common, common_labels = common[:limit], common_labels[:limit]
    if not len(common):
        raise ValueError("the conditions have no source image in common")
    if attention_checks and len(np.intersect1d(pool, common)):
        raise ValueError("attention images share source images with the study")

    rng = np.random.default_rng(seed)
    n_conditions, per = len(sources), size - attention_checks
    if design == "partition":
        condition = assign_conditions(common_labels, n_conditions, rng)
        n_base = -(-len(common) // per)
        assignment = deal(condition, common_labels, n_base, rng)
        src = np.arange(len(common))
        base_block = np.arange(n_base)
    else:
        assignment, condition, src, base_block = _latin_blocks(
            common_labels, n_conditions, per, rng
        )
        n_base = len(base_block)

    # Rater copies: replicate-major numbering, so every image is seen once before any twice.
    n_items = len(assignment)
    assignment = (np.arange(raters)[:, None] * n_base + assignment[None, :]).ravel()
    condition = np.tile(condition, raters)
    source = np.tile(common[src], raters)
    n_assignments = n_base * raters
    block = np.tile(base_block, raters)
    replicate = np.repeat(np.arange(raters), n_base)

    short = per - np.bincount(assignment, minlength=n_assignments)
    fillers = np.zeros(n_assignments, np.int64) if allow_short else short
    extra = attention_checks + fillers
    if extra.max(initial=0) > len(pool):
        raise ValueError(
            f"assignments of {size} need up to {int(extra.max())} distinct attention-pool "
            f"images ({attention_checks} checks + {int(fillers.max())} fillers where the "
            f"sources do not fill them), got {len(pool)}; give a larger attention set or "
            "allow short assignments"
        )
    if extra.sum():
        # Round-robin over one shuffled pool: distinct inside an assignment, even across pool;
        # each assignment's first draws are its checks, the rest its fillers.
        shuffled = rng.permutation(pool)
        owner = np.repeat(np.arange(n_assignments), extra)
        rank = np.arange(len(owner)) - np.repeat(np.cumsum(extra) - extra, extra)
        assignment = np.concatenate([assignment, owner])
        kind = np.where(rank < attention_checks, ATTENTION_CODE, FILLER_CODE)
        condition = np.concatenate([condition, kind])
        source = np.concatenate([source, shuffled[np.arange(len(owner)) % len(pool)]])
    assert len(assignment) == n_items * raters + int(extra.sum())

    # Shuffle within each assignment: rank of a random key inside its assignment = position.
    order = np.lexsort((rng.random(len(assignment)), assignment))
    assignment, condition, source = assignment[order], condition[order], source[order]
    starts = np.searchsorted(assignment, np.arange(n_assignments))
    position = np.arange(len(assignment)) - starts[assignment]
    return Plan(
        design=design,
        seed=seed,
        assignment=assignment,
        position=position,
        condition=condition,
        source=source,
        block=block,
        replicate=replicate,
        sources=common,
        dropped=dropped,
    )
