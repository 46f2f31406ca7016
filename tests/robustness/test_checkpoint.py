"""Checkpoint files: atomic, safe to load, stable hashes."""

from __future__ import annotations

import pytest
import torch

from robustness import checkpoint, load_model


def test_save_is_atomic_and_round_trips(tmp_path):
    path = checkpoint.save({"epoch": 3, "w": torch.arange(4.0)}, tmp_path / "a" / "c.pt")
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]
    state = checkpoint.load(path)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.arange(4.0))


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = checkpoint.save({"epoch": 1}, tmp_path / "c.pt")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        checkpoint.save({"epoch": 2}, path)
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_foreign_or_missing_files_raise_a_clear_error(tmp_path, content):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(path)
    with pytest.raises(checkpoint.CheckpointError):
        load_model(path)


def test_plain_torch_files_are_not_blindspot_checkpoints(tmp_path):
    torch.save({"model": {}}, tmp_path / "y.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a Blindspot checkpoint"):
        checkpoint.load(tmp_path / "y.pt")


def test_weights_hash_depends_on_values_names_and_not_on_order():
    a = {"w": torch.ones(3), "b": torch.zeros(2)}
    b = {"b": torch.zeros(2), "w": torch.ones(3)}
    assert checkpoint.weights_sha256(a) == checkpoint.weights_sha256(b)
    c = {"w": torch.ones(3), "b": torch.tensor([0.0, 1e-30])}
    assert checkpoint.weights_sha256(a) != checkpoint.weights_sha256(c)
    d = {"v": torch.ones(3), "b": torch.zeros(2)}
    assert checkpoint.weights_sha256(a) != checkpoint.weights_sha256(d)
