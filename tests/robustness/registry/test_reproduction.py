"""``manage.py reproduce``: a grid of registered models, resumable, aggregated like the thesis."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from robustness import tables
from robustness.errors import ConfigError
from robustness.registry import reproduction
from robustness.registry.models import TrainedModel

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_thread")]

TINY = tables.Table(
    name="tabletiny",
    title="a tiny table",
    archs=("mlp1000",),
    rows=(tables.Row("plain", "none"), tables.Row("drop", "dropout", {"p": 0.3})),
    columns=(
        tables.Column("err %", "error", scale=100),
        tables.Column("FGSM %", "fgsm", "fgsm", {"eps": 0.2}, scale=100),
        tables.Column("rho", "rho", "deepfool", {"steps": 20}),
    ),
    schedule="ch3",
    epochs=1,
    thesis={"mlp1000": {"plain": (1.0, 50.0, 0.2)}},
)
PRESET = {
    "train_limit": 200,
    "epochs": None,
    "eval_limit": 40,
    "attack_overrides": {"deepfool": {"steps": 10}},
    "defense_overrides": {},
}


@pytest.fixture
def tiny_table(monkeypatch):
    monkeypatch.setitem(tables.TABLES, TINY.name, TINY)
    monkeypatch.setitem(reproduction.TABLES, TINY.name, TINY)
    monkeypatch.setitem(reproduction.PRESETS, "tiny", PRESET)
    return TINY


def test_grid_trains_measures_and_aggregates_over_runs(tiny_table):
    report = reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", runs=2, device="cpu", dataset="synthetic"
    )
    rows = report["networks"]["mlp1000"]
    assert set(rows) == {"plain", "drop"}
    assert rows["plain"]["models"] == ["ttiny-tiny-mlp1000-plain-r0", "ttiny-tiny-mlp1000-plain-r1"]
    err = rows["plain"]["values"]["err %"]
    assert err["n"] == 2 and 0 <= err["mean"] <= 100 and err["thesis"] == 1.0
    assert rows["drop"]["values"]["rho"]["thesis"] is None
    entry = TrainedModel.objects.get(name="ttiny-tiny-mlp1000-drop-r0")
    assert entry.hyperparameters["defense_params"] == {"p": 0.3}
    assert entry.hyperparameters["train_limit"] == 200 and entry.seed == 0
    text = reproduction.format_table(report)
    assert "plain" in text and "(1)" in text and "±" in text


def test_a_second_call_reuses_models_and_measurements(tiny_table):
    first = reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
    )
    stamps = dict(TrainedModel.objects.values_list("name", "updated"))
    second = reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
    )
    assert dict(TrainedModel.objects.values_list("name", "updated")) == stamps
    assert first["networks"] == second["networks"]


def test_an_interrupted_cell_is_resumed(tiny_table):
    reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
    )
    TrainedModel.objects.filter(name="ttiny-tiny-mlp1000-plain-r0").update(
        status="interrupted", metrics={}
    )
    reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", epochs=2, dataset="synthetic"
    )
    entry = TrainedModel.objects.get(name="ttiny-tiny-mlp1000-plain-r0")
    assert entry.status == "done" and entry.epochs_done == 2


def test_command_prints_the_table_and_writes_json(tiny_table, tmp_path, capsys):
    out = tmp_path / "t.json"
    call_command(
        "reproduce",
        "tabletiny",
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--dataset",
        "synthetic",
        "--no-progress",
        "--json",
        str(out),
    )
    printed = capsys.readouterr().out
    assert "a tiny table" in printed and "ttiny-tiny-mlp1000-drop-r0" in printed
    assert json.loads(out.read_text())["table"] == "tabletiny"


def test_bad_table_or_preset_is_one_line():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("reproduce", "table9.9")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("reproduce", "table4.1", "--preset", "huge")


HC_TABLE = tables.Table(
    name="tablehc",
    title="rho and success of one attack",
    archs=("mlp1000",),
    rows=(tables.Row("plain", "none"),),
    columns=(
        tables.Column("rho", "rho", "hc", {"steps": 20}),
        tables.Column("success %", "success", "hc", {"steps": 20}, scale=100),
        tables.Column("DF", "rho", "deepfool", {"steps": 20}),
    ),
    schedule="ch3",
    epochs=1,
)


def test_columns_of_one_attack_share_its_run_and_costly_attacks_see_fewer_images(monkeypatch):
    monkeypatch.setitem(reproduction.TABLES, HC_TABLE.name, HC_TABLE)
    preset = {**PRESET, "attack_limits": {"hc": 12}}
    monkeypatch.setitem(reproduction.PRESETS, "limited", preset)
    runs = []
    real = reproduction.evaluation.run_attack
    monkeypatch.setattr(
        reproduction.evaluation,
        "run_attack",
        lambda attack, model, x, y, **kw: (
            runs.append((attack.name, len(x))) or real(attack, model, x, y, **kw)
        ),
    )
    cell = reproduction.reproduce_cell(
        table_name="tablehc",
        preset_name="limited",
        arch="mlp1000",
        row_label="plain",
        run=0,
        device="cpu",
        dataset="synthetic",
    )
    assert runs == [("hc", 12), ("deepfool", 40)]  # hc once for both columns, on 12 images
    assert 0 <= cell.values["success %"] <= 1 and cell.values["rho"] > 0
    entry = TrainedModel.objects.get(name=cell.model)
    seconds = entry.metrics["reproduce_seconds"]
    assert len(seconds) == 3 and all(v >= 0 for v in seconds.values())
    assert set(seconds) == set(entry.metrics["reproduce"])


def test_a_cell_trained_with_other_settings_is_refused_not_reused(tiny_table, monkeypatch):
    reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
    )
    monkeypatch.setitem(reproduction.PRESETS, "tiny", {**PRESET, "train_limit": 100})
    with pytest.raises(ConfigError, match="train_limit differ.*models --delete ttiny-tiny"):
        reproduction.reproduce(
            table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
        )
    names = list(TrainedModel.objects.values_list("name", flat=True))
    call_command("models", "--delete", *names)
    assert not TrainedModel.objects.exists()
    with pytest.raises(CommandError, match="no model named gone"):
        call_command("models", "--delete", "gone")
    reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
    )
    assert (
        TrainedModel.objects.get(name="ttiny-tiny-mlp1000-plain-r0").hyperparameters["train_limit"]
        == 100
    )


def test_the_research_preset_compresses_the_schedule_to_its_epochs():
    t31, t41 = tables.TABLES["table3.1"], tables.TABLES["table4.1"]
    research = tables.PRESETS["research"]
    lenet = reproduction.cell_config(t31, research, "lenet5", t31.rows[0], 0, None)
    assert lenet.epochs == 5 and lenet.train_limit is None
    assert lenet.gamma == pytest.approx(0.95**20)  # the same final lr as 100 epochs of 0.95
    critic = reproduction.cell_config(t41, research, "mlp1200", t41.rows[-1], 0, None)
    assert critic.milestones == (4, 8) and critic.defense_params["milestones"] == (4, 8)
    smoke = reproduction.cell_config(t41, tables.PRESETS["smoke"], "lenet5", t41.rows[-1], 0, None)
    assert smoke.milestones == (40, 80) and "milestones" not in smoke.defense_params


def test_an_entry_stored_before_a_setting_existed_is_still_reused(tiny_table):
    reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
    )
    entry = TrainedModel.objects.get(name="ttiny-tiny-mlp1000-plain-r0")
    older = {k: v for k, v in entry.hyperparameters.items() if k != "init"}  # its default
    TrainedModel.objects.filter(pk=entry.pk).update(hyperparameters=older)
    stamps = dict(TrainedModel.objects.values_list("name", "updated"))
    reproduction.reproduce(
        table_name="tabletiny", preset_name="tiny", device="cpu", dataset="synthetic"
    )
    assert dict(TrainedModel.objects.values_list("name", "updated")) == stamps
