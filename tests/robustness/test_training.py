"""The training loop: learning, checkpoints, bit-identical resume (also after kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from robustness import checkpoint, data, load_model
from robustness.evaluation import error_rate
from robustness.training import Callbacks, TrainConfig, TrainingError, fit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny() -> data.Dataset:
    return data.synthetic(n_train=400, n_valid=100, n_test=100, seed=3)


def config(**kw) -> TrainConfig:
    base = {"arch": "mlp1000", "dataset": "synthetic", "epochs": 2, "batch_size": 50}
    return TrainConfig.from_schedule("ch3", **{**base, **kw})


def test_training_improves_accuracy_on_synthetic_data(tiny, tmp_path):
    torch.manual_seed(0)
    from robustness import defenses
    from robustness.training import build_model

    untrained = build_model(config(), tiny, defenses.build("none"))
    before = error_rate(untrained, tiny.valid.x, tiny.valid.y)
    result = fit(
        config(epochs=3, arch="lenet5"), tiny, device="cpu", checkpoint_path=tmp_path / "c.pt"
    )
    after = error_rate(result.model, tiny.test.x, tiny.test.y)
    assert before > 0.5
    assert after < 0.2
    assert result.history[-1]["valid_error"] < before
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[0]["train_loss"] > result.history[-1]["train_loss"]


def test_checkpoint_holds_every_state_and_loads_without_django(tiny, tmp_path):
    result = fit(config(epochs=1), tiny, device="cpu", checkpoint_path=tmp_path / "c.pt")
    state = checkpoint.load(tmp_path / "c.pt")
    for key in ("model", "optimizer", "scheduler", "rng", "shuffle_rng", "config", "history"):
        assert key in state
    assert state["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp"))
    model = load_model(tmp_path / "c.pt", device="cpu")
    assert not model.training
    assert torch.equal(model(tiny.test.x[:5]), result.model(tiny.test.x[:5]))


def test_learning_rate_follows_the_chapter_3_schedule(tiny, tmp_path):
    result = fit(config(epochs=3), tiny, device="cpu", checkpoint_path=tmp_path / "c.pt")
    lrs = [h["lr"] for h in result.history]
    assert lrs == pytest.approx([1e-3, 0.95e-3, 0.95**2 * 1e-3])


def test_chapter_4_schedule_halves_at_milestones():
    cfg = TrainConfig.from_schedule("ch4", arch="lenet5")
    assert (cfg.lr, cfg.beta1, cfg.milestones, cfg.gamma) == (5e-4, 0.5, (40, 80), 0.5)


@pytest.mark.parametrize("defense", ["none", "dropout"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tiny, tmp_path, defense):
    full = fit(
        config(defense=defense, epochs=3), tiny, device="cpu", checkpoint_path=tmp_path / "full.pt"
    )
    fit(config(defense=defense, epochs=1), tiny, device="cpu", checkpoint_path=tmp_path / "part.pt")
    # Disturb every global RNG in between, as another job in the same process would.
    torch.rand(100)
    resumed = fit(
        config(defense=defense, epochs=3),
        tiny,
        device="cpu",
        checkpoint_path=tmp_path / "part.pt",
        resume=True,
    )
    assert resumed.resumed_from_epoch == 1
    assert resumed.weights_sha256 == full.weights_sha256
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_resume_refuses_a_different_configuration(tiny, tmp_path):
    fit(config(epochs=1), tiny, device="cpu", checkpoint_path=tmp_path / "c.pt")
    with pytest.raises(TrainingError, match="different configuration"):
        fit(
            config(epochs=2, seed=1),
            tiny,
            device="cpu",
            checkpoint_path=tmp_path / "c.pt",
            resume=True,
        )


def test_callbacks_see_every_step_and_epoch(tiny, tmp_path):
    seen: list = []

    class Record(Callbacks):
        def on_start(self, **kw):
            seen.append(("start", kw))

        def on_step(self, *, epoch, step, loss, error):
            seen.append(("step", epoch, step, loss is not None))

        def on_epoch_end(self, stats, history):
            seen.append(("epoch", stats.epoch, len(history)))

    fit(
        config(epochs=1),
        tiny,
        device="cpu",
        checkpoint_path=tmp_path / "c.pt",
        callbacks=Record(),
        log_every=3,
    )
    assert seen[0] == ("start", {"start_epoch": 1, "epochs": 1, "steps_per_epoch": 8})
    steps = [s for s in seen if s[0] == "step"]
    assert [s[2] for s in steps] == list(range(1, 9))
    assert [s[3] for s in steps] == [False, False, True, False, False, True, False, True]
    assert seen[-1] == ("epoch", 1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"batch_size": -1},
        {"arch": "resnet"},
        {"defense": "magic"},
        {"init": "zeros"},
        {"lr": 0.0},
        {"defense_params": {"p": 0.3}},
    ],
)
def test_bad_configurations_are_rejected(bad):
    with pytest.raises(TrainingError):
        config(**bad)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from robustness import data
    from robustness.training import Callbacks, TrainConfig, fit

    class SlowAfterFirst(Callbacks):
        def on_epoch_end(self, stats, history):
            if stats.epoch == 1:
                Path(sys.argv[2]).write_text("checkpointed")
                time.sleep(60)

    cfg = TrainConfig.from_schedule("ch3", arch="mlp1000", dataset="synthetic", epochs=3,
                                    batch_size=50, defense="dropout")
    tiny = data.synthetic(n_train=400, n_valid=100, n_test=100, seed=3)
    torch.set_num_threads(int(sys.argv[3]))  # CPU sums depend on the number of threads
    fit(cfg, tiny, device="cpu", checkpoint_path=sys.argv[1], callbacks=SlowAfterFirst())
""")


def test_kill_9_after_first_checkpoint_then_resume_gives_the_same_weights(tiny, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    marker = tmp_path / "marker"
    ckpt = tmp_path / "run.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ckpt), str(marker), str(torch.get_num_threads())],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "first checkpoint never appeared"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.load(ckpt)["epoch"] == 1

    cfg = config(defense="dropout", epochs=3)
    resumed = fit(cfg, tiny, device="cpu", checkpoint_path=ckpt, resume=True)
    full = fit(cfg, tiny, device="cpu", checkpoint_path=tmp_path / "full.pt")
    assert resumed.resumed_from_epoch == 1
    assert resumed.weights_sha256 == full.weights_sha256


def test_load_model_gives_the_trained_network_in_eval_mode(tiny, tmp_path):
    result = fit(config(epochs=1), tiny, device="cpu", checkpoint_path=tmp_path / "c.pt")
    model = load_model(tmp_path / "c.pt", device="cpu")
    assert not model.training
    x = tiny.test.x[:4]
    result.model.eval()
    assert torch.equal(model(x), result.model(x))


@pytest.mark.parametrize("before", [False, True])
def test_fit_leaves_deterministic_mode_as_it_found_it(tiny, tmp_path, before):
    """fit() turns deterministic kernels on for its run only (runtime.deterministic)."""
    torch.use_deterministic_algorithms(before)
    try:
        fit(config(epochs=1), tiny, device="cpu", checkpoint_path=tmp_path / "c.pt")
        assert torch.are_deterministic_algorithms_enabled() is before
    finally:
        torch.use_deterministic_algorithms(False)
