"""Researcher reads of a study's answers: export rows, analysis arrays and export_responses."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate.analysis.selectors import (
    ARRAY_KEYS,
    RESPONSE_FIELDS,
    responses_arrays,
    study_responses,
)
from annotate.models import Answer, StimulusSet, Study, Worker
from tests.annotate.factories import make_model_row, make_set, make_study, work

pytestmark = pytest.mark.django_db


@pytest.fixture
def study() -> Study:
    """Adversarial and clean conditions over sources 0–7, one attention check per assignment.

    Five assignments of three stimuli and a check: 0–1 adversarial, 2 mixed, 3–4 clean.
    """
    model = make_model_row("m-at", defense="at")
    adversarial = make_set(8, name="adv", model=model)
    clean = make_set(8, name="adv-clean", kind=StimulusSet.Kind.CLEAN, model=model)
    checks = make_set(3, name="checks", kind=StimulusSet.Kind.ATTENTION, first_source=100)
    return make_study([adversarial, clean], n_assignments=5, size=4, attention=checks, name="s")


def test_rows_match_the_database_and_only_submitted_leases_count_by_default(study):
    first, second = work(study, "alice"), work(study, "bob", offset=3)
    draft = work(study, "carol", submit=False)
    rows = study_responses(study=study)
    submitted = Answer.objects.filter(lease__in=[first, second]).select_related(
        "lease__worker", "lease__assignment", "item__stimulus__set__model", "item__condition"
    )
    assert len(rows) == submitted.count() == 8
    assert all(tuple(row) == RESPONSE_FIELDS for row in rows)
    by_key = {(row["lease"], row["position"]): row for row in rows}
    for answer in submitted:
        row = by_key[(answer.lease_id, answer.item.position)]
        stimulus = answer.item.stimulus
        assert row["study"] == "s" and row["label"] == answer.label
        assert row["worker"] == answer.lease.worker.external_id
        assert row["worker_source"] == "panel" and row["simulated"] is False
        assert row["assignment"] == answer.lease.assignment.index
        assert row["response_ms"] == answer.response_ms == 700 + answer.item.position
        assert row["answered_at"] == answer.saved.isoformat()
        assert row["submitted_at"] == answer.lease.submitted.isoformat()
        assert row["lease_status"] == "submitted"
        assert row["is_attention"] == answer.item.is_attention
        assert row["condition"] == (
            None if answer.item.is_attention else answer.item.condition.position
        )
        assert row["set"] == stimulus.set.name and row["set_kind"] == stimulus.set.kind
        assert row["model"] == stimulus.set.model.name
        assert row["defense"] == stimulus.set.model.defense
        assert row["source_index"] == stimulus.source_index
        assert row["original_label"] == stimulus.original_label
        assert row["target"] == stimulus.target and row["shown_pred"] == stimulus.shown_pred
        assert row["success"] == stimulus.success
    assert {r["worker"] for r in rows} == {"alice", "bob"}
    assert {(r["model"], r["defense"]) for r in rows if not r["is_attention"]} == {("m-at", "at")}
    assert sum(r["is_attention"] for r in rows) == 2

    with_drafts = study_responses(study=study, include_drafts=True)
    extra = [r for r in with_drafts if r["lease"] == draft.pk]
    assert len(with_drafts) == len(rows) + 2 == len(rows) + len(extra)
    assert {r["lease_status"] for r in extra} == {"active"} and extra[0]["submitted_at"] is None


def test_simulated_workers_and_simulated_studies_are_marked(study):
    work(study, "alice")
    Worker.objects.create(external_id="sim", simulated=True)
    work(study, "sim")
    marks = {r["worker"]: r["simulated"] for r in study_responses(study=study)}
    assert marks == {"alice": False, "sim": True}
    assert responses_arrays(study=study)["simulated"].tolist() == [
        r["simulated"] for r in study_responses(study=study)
    ]
    study.simulated = True  # a study holding simulated answers taints every answer
    assert all(r["simulated"] for r in study_responses(study=study))
    assert responses_arrays(study=study)["simulated"].all()
    assert not any(
        r["worker_simulated"] for r in study_responses(study=study) if r["worker"] == "alice"
    )


def test_arrays_align_with_the_rows(study):
    for k, worker in enumerate(["alice", "bob", "dave", "erin"]):
        work(study, worker, offset=k)  # four of five assignments: both conditions appear
    work(study, "carol", submit=False)
    rows, arrays = study_responses(study=study), responses_arrays(study=study)
    assert tuple(arrays) == ARRAY_KEYS
    assert {len(a) for a in arrays.values()} == {len(rows)} == {16}
    assert "carol" not in arrays["worker"]
    assert arrays["worker"].tolist() == [r["worker"] for r in rows]
    assert arrays["label"].tolist() == [r["label"] for r in rows]
    assert arrays["image"].tolist() == [r["source_index"] for r in rows]
    assert arrays["original"].tolist() == [r["original_label"] for r in rows]
    attention = arrays["is_attention"]
    assert attention.dtype == bool and attention.tolist() == [r["is_attention"] for r in rows]
    assert (arrays["condition"][attention] == -1).all()
    assert arrays["condition"][~attention].tolist() == [
        r["condition"] for r in rows if not r["is_attention"]
    ]
    assert (arrays["attention_expected"][attention] == arrays["original"][attention]).all()
    assert (arrays["attention_expected"][~attention] == -1).all()
    assert arrays["target"].tolist() == [-1 if r["target"] is None else r["target"] for r in rows]
    assert (arrays["target"][~attention] == -1).any() and (arrays["target"] >= 0).any()
    assert arrays["condition"].dtype == np.int64 and arrays["simulated"].dtype == bool


def test_an_empty_study_gives_empty_rows_and_arrays(study):
    assert study_responses(study=study) == []
    arrays = responses_arrays(study=study)
    assert tuple(arrays) == ARRAY_KEYS and all(len(a) == 0 for a in arrays.values())


def count_queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_reads_take_a_constant_number_of_queries():
    sets = [make_set(30), make_set(30, kind=StimulusSet.Kind.NOISE)]
    study = make_study(sets, n_assignments=12, size=5)
    work(study, "w0")
    few = [
        count_queries(lambda: study_responses(study=study, include_drafts=True)),
        count_queries(lambda: responses_arrays(study=study)),
    ]
    for k in range(1, 10):
        work(study, f"w{k}")
    assert len(study_responses(study=study)) == 50
    many = [
        count_queries(lambda: study_responses(study=study, include_drafts=True)),
        count_queries(lambda: responses_arrays(study=study)),
    ]
    assert few == many == [1, 1]


def test_export_csv_to_stdout_parses_back(study):
    work(study, "alice")
    Worker.objects.create(external_id="sim", simulated=True)
    work(study, "sim")
    out, err = io.StringIO(), io.StringIO()
    call_command("export_responses", "--study", "s", "--format", "csv", stdout=out, stderr=err)
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    rows = study_responses(study=study)
    assert tuple(parsed[0]) == RESPONSE_FIELDS and len(parsed) == len(rows) == 8
    assert [p["label"] for p in parsed] == [r["label"] for r in rows]
    assert [p["worker"] for p in parsed] == [r["worker"] for r in rows]
    assert {p["worker"]: p["simulated"] for p in parsed} == {"alice": "false", "sim": "true"}
    assert {p["condition"] for p in parsed if p["is_attention"] == "true"} == {""}
    assert "8 answers of study s" in err.getvalue()


def test_export_json_to_a_file_with_drafts(study, tmp_path):
    work(study, "alice")
    work(study, "bob", submit=False)
    path = tmp_path / "answers.json"
    out = io.StringIO()
    call_command(
        "export_responses", "--study", "s", "--format", "json", "--output", str(path),
        "--include-drafts", stdout=out,
    )  # fmt: skip
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == study_responses(study=study, include_drafts=True)
    assert len(data) == 6 and {d["lease_status"] for d in data} == {"submitted", "active"}
    assert f"wrote 6 answers of study s to {path}" in out.getvalue()


def test_export_header_only_for_a_study_without_answers(study):
    out = io.StringIO()
    call_command("export_responses", "--study", "s", stdout=out, stderr=io.StringIO())
    assert out.getvalue().strip() == ",".join(RESPONSE_FIELDS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--study", "nope"], "no study named nope"),
        (["--study", "s", "--format", "xml"], "invalid choice"),
        (["--study", "s", "--output", "/nonexistent/dir/out.csv"], "cannot write"),
    ],
)
def test_export_bad_input_is_a_command_error(study, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("export_responses", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_csv_cells_a_spreadsheet_would_run_as_formulas_stay_text(study):
    """Finding 9: participant ids are chosen by participants (or their panel)."""
    for n, evil in enumerate(["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)"]):
        work(study, f"safe-{n}")
        Worker.objects.filter(external_id=f"safe-{n}").update(external_id=evil)
    out = io.StringIO()
    call_command("export_responses", "--study", study.name, "--format", "csv", stdout=out)
    cells = [row["worker"] for row in csv.DictReader(io.StringIO(out.getvalue()))]
    for evil in ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)"]:
        assert "'" + evil in cells and evil not in cells
