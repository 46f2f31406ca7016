"""``study_results``: Table 4.2 from submitted answers, the same numbers in every format."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from annotate.analysis import results as results_mod
from annotate.analysis.results import study_results, study_results_cached
from annotate.work.answers import lease_submit
from annotate.work.leases import lease_acquire
from tests.annotate.factories import make_set, make_study

pytestmark = pytest.mark.django_db


def submit(study, worker, labels_for):
    lease = lease_acquire(study=study, worker_id=worker)
    items = lease.assignment.items.select_related("stimulus")
    answers = [{"item": i.key, "label": labels_for(i), "ms": 900} for i in items]
    lease_submit(lease=lease, answers=answers)


def run(*args):
    out = io.StringIO()
    call_command("study_results", *args, stdout=out)
    return out.getvalue()


def test_rates_match_a_hand_count_in_every_format():
    # Factories: stimulus i has label i % 10 and target (i + 1) % 10; 2 assignments of 5.
    study = make_study([make_set(10, name="adv-set")], n_assignments=2, size=5)
    submit(study, "w1", lambda i: str(i.stimulus.target))  # 5 × change
    # w2: positions 1, 3 → the original digit; positions 0, 2, 4 → '?'
    submit(study, "w2", lambda i: str(i.stimulus.original_label) if i.position % 2 else "?")
    result = json.loads(run("--study", study.name, "--format", "json", "--bootstrap", "50"))
    (row,) = result["conditions"]
    assert row["answers"] == 10 and row["workers"] == 2
    assert row["change"]["pct"] == pytest.approx(50.0)
    assert row["no_change"]["pct"] == pytest.approx(20.0)
    assert row["unsure"]["pct"] == pytest.approx(30.0)
    assert row["other"]["pct"] == pytest.approx(0.0)
    low, high = row["change"]["wilson"]
    assert low < 50 < high
    table = run("--study", study.name, "--bootstrap", "50")
    assert "adv-set" in table and " 50.0" in table and " 20.0" in table
    rows = list(csv.DictReader(io.StringIO(run("--study", study.name, "--format", "csv"))))
    assert len(rows) == 1 and float(rows[0]["change_pct"]) == pytest.approx(50.0)
    assert float(rows[0]["change_wilson_low"]) == pytest.approx(low)


def test_one_row_per_condition_and_unknown_study():
    sets = [make_set(10, name="a"), make_set(10, name="b", first_source=10)]
    study = make_study(sets, n_assignments=4, size=5)
    for w in range(4):
        submit(study, f"w{w}", lambda i: str(i.stimulus.original_label))
    result = json.loads(run("--study", study.name, "--format", "json", "--bootstrap", "20"))
    assert [r["name"] for r in result["conditions"]] == ["a", "b"]
    assert all(r["no_change"]["pct"] == 100.0 for r in result["conditions"])
    with pytest.raises(CommandError, match="no study"):
        run("--study", "missing")


def test_a_worker_failing_an_attention_check_is_excluded_before_the_rates():
    checks = make_set(4, name="checks", kind="attention", first_source=100)
    study = make_study([make_set(8, name="adv")], n_assignments=2, size=5, attention=checks)

    def honest(i):
        return str(i.stimulus.original_label)

    def careless(i):  # fails the check (wrong digit), types the target elsewhere
        s = i.stimulus
        return str((s.original_label + 5) % 10) if i.is_attention else str(s.target)

    submit(study, "good", honest)
    submit(study, "bad", careless)
    result = json.loads(run("--study", study.name, "--format", "json", "--bootstrap", "20"))
    assert result["exclusions"]["workers_excluded"] == 1
    (row,) = result["conditions"]
    assert row["workers"] == 1 and row["change"]["pct"] == 0.0


def test_cached_results_equal_fresh_ones_and_a_new_submission_renews_them(monkeypatch):
    from tests.annotate.factories import make_study, work

    study = make_study(n_assignments=3)
    work(study, "w1")
    first = study_results_cached(study=study, bootstrap=50)
    assert first == study_results(study=study, bootstrap=50)
    calls = []
    real = study_results
    monkeypatch.setattr(results_mod, "study_results", lambda **kw: calls.append(kw) or real(**kw))
    assert study_results_cached(study=study, bootstrap=50) == first
    assert calls == []  # served from the cache
    assert study_results_cached(study=study, bootstrap=60) is not None
    assert len(calls) == 1  # other parameters: computed
    work(study, "w2")
    renewed = study_results_cached(study=study, bootstrap=50)
    assert len(calls) == 2 and renewed != first
    assert renewed["conditions"][0]["answers"] > first["conditions"][0]["answers"]
