"""Label fields hold digits 0–9 wherever they enter: responses, stimulus rows, the database.

Issue 17, finding 3: a target of 10 used to be accepted, and then a '?' answer (code 10)
counted as "change".
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotate.analysis.responses import OUTCOMES, Responses
from annotate.errors import StimulusError
from annotate.labels import non_digits
from annotate.models import Stimulus
from annotate.stimuli import sources
from annotate.stimuli.storage import stimulus_rows
from tests.annotate.factories import make_model_row, make_set


def responses(**overrides) -> Responses:
    """Two study answers (a 3 attacked towards 8) and one attention check (expecting 7)."""
    columns = {
        "condition": ["A", "A", ""],
        "worker": ["w1", "w2", "w1"],
        "image": [0, 1, 1000],
        "label": ["8", "?", "7"],
        "original": [3, 3, -1],
        "target": [8, 8, -1],
        "is_attention": [False, False, True],
        "attention_expected": [-1, -1, 7],
    }
    return Responses(**{**columns, **overrides})


def test_a_target_of_10_is_refused_so_unsure_never_counts_as_change():
    with pytest.raises(ValueError, match=r"Responses\.target must be a digit 0–9.*\[10\]"):
        responses(target=[8, 10, -1])


def test_outcomes_count_only_digit_targets_as_change():
    kept = responses()
    object.__setattr__(kept, "target", np.array([8, 10, -1]))  # past the constructor's check
    assert [OUTCOMES[i] for i in kept.outcomes()[:2]] == ["change", "unsure"]


@pytest.mark.parametrize(
    ("field", "values", "shown"),
    [
        ("original", [3, 12, -1], "[12]"),
        ("original", [-1, 3, -1], "[-1]"),  # a study answer needs its original
        ("target", [-2, 8, -1], "[-2]"),
        ("attention_expected", [-1, -1, -1], "[-1]"),  # a check needs its digit
        ("attention_expected", [10, -1, 7], "[10]"),
    ],
)
def test_responses_refuse_non_digit_labels_naming_the_field(field, values, shown):
    with pytest.raises(ValueError, match=rf"Responses\.{field} must be a digit.*{shown}"):
        responses(**{field: values})


def test_responses_show_at_most_five_bad_values():
    n = 8
    with pytest.raises(ValueError, match=r"got \[10, 11, 12, 13, 14\]$"):
        Responses(
            condition=["A"] * n,
            worker=["w"] * n,
            image=list(range(n)),
            label=["3"] * n,
            original=[3] * n,
            target=list(range(10, 10 + n)),
            is_attention=[False] * n,
            attention_expected=[-1] * n,
        )


def test_non_digits_lists_distinct_offenders_in_order():
    assert non_digits([3, None, 10, 10, -1, 9, "7", 2.5, True]) == [10, -1, "7", 2.5, True]
    assert non_digits(range(100), most=2) == [10, 11]
    assert non_digits(np.arange(10)) == []


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["original_label", "target", "clean_pred", "shown_pred"])
def test_stimulus_rows_refuse_non_digit_labels_before_anything_is_stored(field):
    row = make_set(0, name="incoming")
    columns = {name: [3, 4] for name in ("original_label", "clean_pred", "shown_pred")}
    columns |= {"source_index": [0, 1], "target": [None, 8], field: [3, 10]}
    with pytest.raises(StimulusError, match=rf"set incoming: {field} must be a digit 0–9.*\[10\]"):
        stimulus_rows(row, columns)
    columns[field] = [3, 9]
    assert len(stimulus_rows(row, columns)) == 2


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["original_label", "target", "clean_pred", "shown_pred"])
def test_the_database_and_the_validators_refuse_non_digit_labels(field):
    stimulus = make_set(1).stimuli.get()
    setattr(stimulus, field, 10)
    with pytest.raises(ValidationError) as info:
        stimulus.full_clean()
    assert field in info.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        stimulus.save()
    assert Stimulus.objects.filter(**{field: 10}).count() == 0


@pytest.mark.django_db
def test_sources_refuse_a_dataset_with_more_classes_than_digits(monkeypatch):
    monkeypatch.setattr(sources, "dataset_load", lambda name: SimpleNamespace(num_classes=100))
    with pytest.raises(StimulusError, match="100 classes; workers answer with the digits 0–9"):
        sources.sources_load(make_model_row("wide"), "test", "cpu")
