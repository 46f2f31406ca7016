"""``manage.py train`` and ``manage.py models``: registry, JSON, resume and error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from robustness import load_model
from robustness.registry.models import TrainedModel

REPO = Path(__file__).resolve().parents[3]
TINY = [
    "--arch",
    "mlp1000",
    "--dataset",
    "synthetic",
    "--batch-size",
    "64",
    "--no-progress",
    "--device",
    "cpu",
]

pytestmark = pytest.mark.django_db


def train(*args: str) -> None:
    call_command("train", *TINY, *args)


def test_train_registers_evaluates_and_writes_json(tmp_path, capsys):
    out = tmp_path / "out" / "result.json"
    train("--model", "m1", "--epochs", "2", "--seed", "5", "--json", str(out))
    result = json.loads(out.read_text())
    for key in (
        "name",
        "arch",
        "defense",
        "epochs",
        "seed",
        "device",
        "test_error",
        "valid_error",
        "train_seconds",
        "images_per_second",
        "checkpoint",
        "weights_sha256",
    ):
        assert key in result, key
    assert (
        result["name"],
        result["arch"],
        result["defense"],
        result["epochs"],
        result["seed"],
    ) == ("m1", "mlp1000", "none", 2, 5)
    assert 0 <= result["test_error"] < 0.5

    row = TrainedModel.objects.get(name="m1")
    assert row.status == TrainedModel.Status.DONE
    assert row.hyperparameters["batch_size"] == 64 and row.hyperparameters["lr"] == 1e-3
    assert row.epochs_done == row.epochs_total == 2 and len(row.history) == 2
    assert row.weights_sha256 == result["weights_sha256"]
    assert row.wall_seconds >= row.train_seconds > 0
    model = load_model(result["checkpoint"], device="cpu")
    assert sum(p.numel() for p in model.parameters()) == 2_797_010
    assert "test error" in capsys.readouterr().out


def test_resume_extends_a_run_to_the_weights_of_an_uninterrupted_one():
    train("--model", "short", "--epochs", "1", "--defense", "dropout")
    call_command("train", "--model", "short", "--resume", "--epochs", "3", "--no-progress")
    train("--model", "long", "--epochs", "3", "--defense", "dropout")
    short, long = TrainedModel.objects.get(name="short"), TrainedModel.objects.get(name="long")
    assert short.epochs_done == 3
    assert short.weights_sha256 == long.weights_sha256
    # The older checkpoint file was replaced, not left behind.
    assert len(list(Path(short.checkpoint.path).parent.iterdir())) == 1


def test_resume_continues_an_interrupted_registry_entry(settings):
    train("--model", "cut", "--epochs", "2")
    row = TrainedModel.objects.get(name="cut")
    uninterrupted = row.weights_sha256
    # Simulate a crash after epoch 1: the registry says running, the run folder holds epoch 1.
    from robustness import checkpoint

    train("--model", "ref1", "--epochs", "1")
    ref1 = settings.BLINDSPOT_RUNS_DIR / "ref1" / "last.pt"
    state = checkpoint.load(ref1)
    checkpoint.save(
        {k: v for k, v in state.items() if k not in ("format", "version")},
        settings.BLINDSPOT_RUNS_DIR / "cut" / "last.pt",
    )
    TrainedModel.objects.filter(pk=row.pk).update(
        status="interrupted", epochs_done=1, weights_sha256=""
    )
    call_command("train", "--model", "cut", "--resume", "--no-progress")
    row.refresh_from_db()
    assert row.status == "done" and row.epochs_done == 2
    assert row.weights_sha256 == uninterrupted


def test_models_lists_the_registry(capsys):
    call_command("models")
    assert "no models registered" in capsys.readouterr().out
    train("--model", "listed", "--epochs", "1")
    call_command("models")
    out = capsys.readouterr().out
    assert "listed" in out and "mlp1000" in out and "done" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "x", "--arch", "resnet"], "invalid choice"),
        (["--model", "x", "--arch", "lenet5", "--defense", "magic"], "invalid choice"),
        (["--model", "x", "--arch", "lenet5", "--epochs", "0"], "must be positive"),
        (["--model", "x", "--arch", "lenet5", "--epochs", "-2"], "must be positive"),
        (["--model", "x", "--arch", "lenet5", "--param", "p"], "not key=value"),
        (["--model", "x"], "--arch is required"),
        (["--model", "bad/name", "--arch", "lenet5"], "invalid model name"),
        (["--model", "x", "--resume"], "no model named 'x' to resume"),
        (["--model", "x", "--resume", "--arch", "lenet5"], "drop --arch"),
        (["--model", "x", "--arch", "lenet5", "--param", "p=0.3"], "has no parameter 'p'"),
    ],
)
def test_bad_flags_fail_with_one_line(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("train", *args)


def test_existing_name_without_resume_is_refused_and_kept():
    train("--model", "taken", "--epochs", "1")
    sha = TrainedModel.objects.get(name="taken").weights_sha256
    with pytest.raises(CommandError, match="already exists; pass --resume"):
        train("--model", "taken", "--epochs", "1")
    assert TrainedModel.objects.get(name="taken").weights_sha256 == sha
    train("--model", "taken", "--epochs", "1", "--seed", "9", "--replace")
    assert TrainedModel.objects.get(name="taken").weights_sha256 != sha


def test_missing_data_source_is_explained_and_registers_nothing(tmp_path, monkeypatch, settings):
    settings.BLINDSPOT_DATA_DIR = tmp_path / "empty-cache"
    settings.MNIST_DIR = str(tmp_path / "nowhere")
    with pytest.raises(CommandError, match="MNIST_DIR"):
        call_command("train", "--model", "m", "--arch", "lenet5", "--no-progress")
    assert not TrainedModel.objects.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_machine_is_refused():
    with pytest.raises(CommandError, match="CUDA is not available"):
        call_command("train", "--model", "g", "--arch", "lenet5", "--device", "cuda")


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "x", "--arch", "nope"],
        ["--model", "x", "--arch", "lenet5", "--epochs", "0"],
    ],
)
def test_command_line_errors_print_no_traceback(args, tmp_path):
    env = {**os.environ, "BLINDSPOT_VAR_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "manage.py", "train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "error:" in out.stderr
