"""``manage.py evaluate`` and ``manage.py attack`` on a registered (synthetic) model."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from robustness.registry.models import TrainedModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def registered():
    call_command(
        "train",
        "--model",
        "tiny",
        "--arch",
        "lenet5",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
    )
    return TrainedModel.objects.get(name="tiny")


def test_evaluate_writes_the_registry_and_json(registered, tmp_path, capsys):
    out = tmp_path / "eval.json"
    call_command(
        "evaluate",
        "--model",
        "tiny",
        "--attacks",
        "fgsm,deepfool,hc",
        "--limit",
        "40",
        "--set",
        "hc.steps=50",
        "--set",
        "deepfool.steps=50",
        "--json",
        str(out),
        "--no-progress",
    )
    report = json.loads(out.read_text())
    assert report["examples"] == 40 and 0 <= report["clean_error"] <= 1
    assert set(report["fgsm"]) >= {"eps", "error"} and report["fgsm"]["eps"] == 0.2
    assert report["fgsm"]["error"] >= report["clean_error"]
    for name in ("deepfool", "hc"):
        assert set(report[name]) >= {"rho", "rho_all", "success_rate", "mean_norm"}
        assert report[name]["rho_all"] <= report[name]["rho"]
    assert report["hc"]["params"]["steps"] == 50
    registered.refresh_from_db()
    assert registered.metrics["robustness"]["deepfool"]["rho"] == report["deepfool"]["rho"]
    assert "clean error" in capsys.readouterr().out


def test_attack_reports_the_chapter_5_summary(registered, tmp_path):
    out = tmp_path / "attack.json"
    call_command(
        "attack",
        "--model",
        "tiny",
        "--attack",
        "pgd",
        "--norm",
        "l2",
        "--limit",
        "30",
        "--steps",
        "10",
        "--set",
        "eps=2.0",
        "--set",
        "step=0.5",
        "--thresholds",
        "0.5,1,2",
        "--json",
        str(out),
        "--no-progress",
    )
    report = json.loads(out.read_text())
    for key in (
        "attack",
        "norm",
        "success_rate",
        "mean_norm",
        "median_norm",
        "robust_accuracy",
        "seconds",
        "images_per_second",
    ):
        assert key in report, key
    assert (report["attack"], report["norm"]) == ("pgd", "l2")
    assert list(report["robust_accuracy"]) == ["0.5", "1", "2"]
    accs = list(report["robust_accuracy"].values())
    assert accs == sorted(accs, reverse=True)
    registered.refresh_from_db()
    assert "pgd-l2" in registered.metrics["attacks"]


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("evaluate", ["--model", "nope"], "no model named 'nope'"),
        ("evaluate", ["--model", "tiny", "--attacks", "fgsm,magic"], "--attacks takes"),
        ("evaluate", ["--model", "tiny", "--set", "steps=3"], "ATTACK.KEY=VALUE"),
        (
            "evaluate",
            ["--model", "tiny", "--attacks", "fgsm", "--set", "cw.steps=3"],
            "not evaluated",
        ),
        ("evaluate", ["--model", "tiny", "--attacks", "fgsm", "--set", "fgsm.eps=big"], "eps"),
        ("attack", ["--model", "tiny", "--attack", "fgsm", "--steps", "3"], "no parameter 'steps'"),
        ("attack", ["--model", "tiny", "--attack", "pgd", "--norm", "l7"], "l7"),
        (
            "attack",
            ["--model", "tiny", "--attack", "pdgd", "--norm", "linf"],
            "supports the norm l2, not 'linf'",
        ),
        ("attack", ["--model", "tiny", "--attack", "magic"], "invalid choice"),
        (
            "attack",
            ["--model", "tiny", "--attack", "pgd", "--thresholds", "a,b"],
            "comma-separated",
        ),
        ("attack", ["--model", "tiny", "--attack", "pgd", "--limit", "0"], "must be positive"),
    ],
)
def test_bad_input_is_one_line(registered, command, args, message):
    with pytest.raises(CommandError, match=message):
        call_command(command, *args, "--no-progress")


def test_a_fixed_norm_attack_accepts_its_own_norm(registered, tmp_path):
    out = tmp_path / "pdgd.json"
    call_command(
        "attack", "--model", "tiny", "--attack", "pdgd", "--norm", "l2", "--limit", "4",
        "--steps", "3", "--json", str(out), "--no-progress",
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert (report["attack"], report["norm"], report["params"]["steps"]) == ("pdgd", "l2", 3)


def test_unfinished_models_are_refused(registered):
    TrainedModel.objects.filter(pk=registered.pk).update(status="running")
    with pytest.raises(CommandError, match="is running, not done"):
        call_command("evaluate", "--model", "tiny")
