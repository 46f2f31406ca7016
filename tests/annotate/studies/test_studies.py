"""Study services and commands: creation from sets, frozen config, open/close, the worker link."""

from __future__ import annotations

import hashlib
import json
import sys
import types

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory

from annotate.errors import StudyError
from annotate.models import Assignment, Event, Item, StimulusSet, Study
from annotate.studies.creation import DEFAULT_INSTRUCTIONS, study_create
from annotate.studies.design import plan_study
from annotate.studies.lifecycle import study_close, study_link, study_open
from annotate.studies.spec import StudySpec
from robustness.registry.models import TrainedModel
from tests.annotate.factories import make_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def sets() -> list[StimulusSet]:
    """Three finished sets from three models over source images 0 … 39."""
    return [make_set(40, name=f"cond-{i}") for i in range(3)]


@pytest.fixture
def attention() -> StimulusSet:
    return make_set(10, name="checks", kind=StimulusSet.Kind.ATTENTION, first_source=1000)


def create(conditions, attention=None, **kw) -> Study:
    args = dict(
        name="s1",
        sets=[s.name for s in conditions],
        size=10,
        attention_checks=2 if attention else 0,
        attention_set=attention.name if attention else None,
    )
    return study_create(spec=StudySpec(**(args | kw)))


def test_partition_study_items_follow_the_plan_and_point_at_the_right_stimuli(sets, attention):
    study = create(sets, attention, seed=4)
    assert study.status == Study.Status.DRAFT and study.design == "partition"
    assert [c.set.name for c in study.conditions.all()] == ["cond-0", "cond-1", "cond-2"]
    assert study.assignments.count() == 5  # 40 sources, 8 per assignment
    items = list(
        Item.objects.filter(assignment__study=study).select_related(
            "assignment", "stimulus", "condition"
        )
    )
    assert len(items) == 5 * 10
    plan = plan_study(
        design="partition",
        sources=[np.arange(40)] * 3,
        labels=[np.arange(40) % 10] * 3,
        size=10,
        attention_checks=2,
        attention_pool=np.arange(1000, 1010),
        seed=4,
    )
    got = sorted(
        (
            i.assignment.index,
            i.position,
            -1 if i.is_attention else i.condition.position,
            i.stimulus.source_index,
        )
        for i in items
    )
    want = list(
        zip(
            plan.assignment.tolist(),
            plan.position.tolist(),
            plan.condition.tolist(),
            plan.source.tolist(),
            strict=True,
        )
    )
    assert got == want
    for i in items:
        if i.is_attention:
            assert i.condition is None and i.stimulus.set_id == attention.pk
        else:
            assert i.stimulus.set_id == i.condition.set_id
    shown = sorted(i.stimulus.source_index for i in items if not i.is_attention)
    assert shown == list(range(40))


def test_full_design_with_raters_records_blocks_and_replicates(sets, attention):
    study = create(sets, attention, design="full", raters=2)
    study_items = Item.objects.filter(assignment__study=study, is_attention=False)
    per_stimulus = study_items.values_list("stimulus", flat=True)
    counts = np.bincount(np.array(list(per_stimulus)))
    assert sorted(set(counts[counts > 0].tolist())) == [2]
    assert len(set(per_stimulus)) == 3 * 40
    rows = list(study.assignments.values_list("index", "replicate", "block"))
    assert len(rows) == 5 * 3 * 2
    assert {r for _, r, _ in rows} == {0, 1} and len({b for _, _, b in rows}) == 5
    assert study.config["plan"]["assignments"] == len(rows)


def test_config_is_frozen_hashed_and_creation_is_idempotent(sets, attention):
    study = create(sets, attention)
    study.refresh_from_db()
    canonical = json.dumps(study.config, sort_keys=True, separators=(",", ":"))
    assert study.config_hash == hashlib.sha256(canonical.encode()).hexdigest()
    config = study.config
    assert [s["name"] for s in config["sets"]] == ["cond-0", "cond-1", "cond-2"]
    assert config["sets"][0]["weights_sha256"] == sets[0].weights_sha256
    assert config["sets"][1]["model"] == sets[1].model.name
    assert config["sets"][2]["stimuli"] == 40
    assert config["attention_set"]["name"] == "checks"
    assert config["plan"]["items"] == 50 and config["seed"] == 0
    n_items = Item.objects.count()
    again = create(sets, attention)
    assert again.pk == study.pk and Item.objects.count() == n_items
    with pytest.raises(StudyError, match="already exists with another configuration"):
        create(sets, attention, seed=1)
    other = create(sets, attention, name="s2")
    assert other.config_hash == study.config_hash  # same design: the hash excludes the name
    assert Assignment.objects.filter(study=other).count() == 5


def test_creation_is_a_handful_of_queries(sets, attention, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):
        create(sets, attention, design="full", raters=2)


def test_default_instructions_are_neutral(sets):
    study = create(sets)
    assert study.instructions == DEFAULT_INSTRUCTIONS and "?" in study.instructions
    for word in ("adversarial", "model", "defense", "defence", "target", "attack"):
        assert word not in study.instructions.lower()


def test_limit_and_custom_texts(sets):
    study = create(sets, limit=20, instructions="Label them.", title="Digits")
    assert study.assignments.count() == 2
    assert (study.instructions, study.title) == ("Label them.", "Digits")
    sources = Item.objects.filter(assignment__study=study).values_list(
        "stimulus__source_index", flat=True
    )
    assert sorted(sources) == list(range(20))


def test_sources_missing_from_a_condition_are_dropped_and_reported(sets):
    extra = make_set(30, name="partial", first_source=20)
    study = study_create(
        spec=StudySpec(name="s", sets=["cond-0", "partial"], size=5, attention_checks=0)
    )
    assert study.config["plan"]["sources"] == 20
    assert study.config["plan"]["dropped_sources"] == 20 + 10
    assert extra.stimuli.count() == 30


def _break(change: str | None, sets: list[StimulusSet]) -> None:
    """Spoil the fixture data the way a parametrised case asks."""
    if change == "status":
        StimulusSet.objects.filter(pk=sets[1].pk).update(status="running")
    elif change == "split":
        StimulusSet.objects.filter(pk=sets[1].pk).update(split="train")
    elif change == "dataset":
        TrainedModel.objects.filter(pk=sets[2].model_id).update(dataset="cifar10")
    elif change == "overlap":
        make_set(10, name="bad-checks", kind="attention", first_source=35)


@pytest.mark.parametrize(
    ("change", "kw", "message"),
    [
        (None, dict(sets=["cond-0", "nope"]), "no stimulus set named nope"),
        (None, dict(sets=["cond-0", "cond-0"]), "more than once"),
        (None, dict(sets=[]), "at least one"),
        (None, dict(sets=["checks"]), "attention"),
        ("status", {}, "is running, not done"),
        ("split", {}, "different splits"),
        ("dataset", {}, "different datasets"),
        (None, dict(attention_checks=10), "below the size"),
        (None, dict(size=0), "size must be positive"),
        (None, dict(raters=0), "raters must be positive"),
        (None, dict(assignments_per_worker=0), "per worker must be positive"),
        (None, dict(lease_seconds=0), "lease seconds"),
        (None, dict(design="latin"), "unknown design"),
        (None, dict(name="bad name"), "not a valid name"),
        (None, dict(attention_set="cond-1"), "not an attention set"),
        (None, dict(attention_set="missing"), "no attention set named missing"),
        ("overlap", dict(attention_set="bad-checks"), "share source images"),
        (None, dict(attention_checks=11, size=12), "need at least that many"),
    ],
)
def test_bad_requests_raise_one_line_study_errors(sets, attention, change, kw, message):
    _break(change, sets)
    with pytest.raises(StudyError, match=message) as info:
        create(sets, attention, **kw)
    assert "\n" not in str(info.value)
    assert not Study.objects.exists()


def test_without_an_attention_set_one_is_generated_once(sets, monkeypatch):
    calls = []

    def fake(*, model, name, count, exclude_sources, split, seed):
        calls.append(dict(model=model, name=name, count=count, split=split, seed=seed))
        assert set(exclude_sources) >= set(range(40))
        return make_set(count, name=name, kind="attention", model=model, first_source=5000)

    fake_module = types.ModuleType("annotate.stimuli.attention")
    fake_module.attention_set_generate = fake
    monkeypatch.setitem(sys.modules, "annotate.stimuli.attention", fake_module)
    study = study_create(spec=StudySpec(name="gen", sets=["cond-0", "cond-1"], size=10, seed=3))
    assert calls == [
        dict(model=sets[0].model, name="gen-attention", count=50, split="test", seed=3)
    ]
    assert study.config["attention_set"]["name"] == "gen-attention"
    assert Item.objects.filter(assignment__study=study, is_attention=True).count() == 2 * 5
    again = study_create(spec=StudySpec(name="gen", sets=["cond-0", "cond-1"], size=10, seed=3))
    assert again.pk == study.pk and len(calls) == 1


def test_open_and_close_follow_the_lifecycle_and_log_events(sets):
    study = create(sets)
    with pytest.raises(StudyError, match="is draft"):
        study_close(study=study)
    study_open(study=study)
    assert study.status == Study.Status.OPEN and study.opened is not None
    assert Study.objects.get(pk=study.pk).status == Study.Status.OPEN
    with pytest.raises(StudyError, match="already|is open"):
        study_open(study=study)
    study_close(study=study)
    assert Study.objects.get(pk=study.pk).status == Study.Status.CLOSED
    assert study.closed is not None
    study_open(study=study)  # a closed study may be reopened
    kinds = list(Event.objects.filter(study=study).values_list("kind", flat=True))
    assert kinds == [Event.Kind.OPENED, Event.Kind.CLOSED, Event.Kind.OPENED]


def test_study_link_names_the_study_only_by_its_key(sets):
    study = create(sets)
    path = study_link(study)
    assert path == f"/s/{study.key}/"
    assert study_link(study, base_url="http://example.org/") == f"http://example.org{path}"
    request = RequestFactory().get("/", HTTP_HOST="testserver")
    assert study_link(study, request=request) == f"http://testserver{path}"
    assert study.name not in path


def test_commands_create_open_and_close_a_study(sets, attention, capsys, tmp_path):
    text = tmp_path / "instructions.txt"
    text.write_text("Type what you see.\n")
    call_command(
        "create_study",
        "--study", "cmd", "--sets", "cond-0,cond-1", "--size", "10", "--attention-checks", "2",
        "--attention-set", "checks", "--lease-minutes", "5", "--per-worker", "2",
        "--instructions-file", str(text),
    )  # fmt: skip
    out = capsys.readouterr().out
    study = Study.objects.get(name="cmd")
    assert study.lease_seconds == 300 and study.assignments_per_worker == 2
    assert study.instructions == "Type what you see."
    assert "2 conditions, 5 assignments, 50 items" in out and study.config_hash in out
    assert "0 dropped sources" in out
    call_command("open_study", "--study", "cmd", "--base-url", "http://host:9000")
    out = capsys.readouterr().out
    assert f"http://host:9000/s/{study.key}/" in out
    call_command("open_study", "--study", "cmd")  # already open: prints the link again
    assert "already open" in capsys.readouterr().out
    call_command("close_study", "--study", "cmd")
    assert Study.objects.get(name="cmd").status == Study.Status.CLOSED


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("create_study", ["--study", "x", "--sets", "cond-0,nope"], "no stimulus set named"),
        ("create_study", ["--study", "x", "--sets", "cond-0", "--size", "0"], "positive"),
        ("create_study", ["--study", "x", "--sets", "cond-0", "--design", "latin"], "latin"),
        ("create_study", ["--study", "x", "--sets", "cond-0", "--attention-checks", "-1"], "neg"),
        (
            "create_study",
            ["--study", "x", "--sets", "cond-0", "--instructions-file", "/no/f"],
            "cannot read",
        ),
        (
            "create_study",
            ["--study", "x", "--sets", "cond-0", "--attention-checks", "3", "--size", "3"],
            "below",
        ),
        ("open_study", ["--study", "nope"], "no study named nope"),
        ("close_study", ["--study", "nope"], "no study named nope"),
    ],
)
def test_commands_turn_bad_input_into_command_errors(sets, command, args, message):
    with pytest.raises(CommandError, match=message):
        call_command(command, *args)
    assert not Study.objects.exists()


def test_closing_a_draft_is_a_command_error(sets):
    create(sets)
    with pytest.raises(CommandError, match="is draft"):
        call_command("close_study", "--study", "s1")
