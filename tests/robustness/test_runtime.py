"""Device resolution and seeding."""

from __future__ import annotations

import pytest
import torch

from robustness import runtime


def test_auto_picks_cuda_only_when_available(monkeypatch):
    monkeypatch.delenv("BLINDSPOT_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.resolve_device("auto").type == expected
    assert runtime.resolve_device(None).type == expected


def test_the_library_reads_no_environment(monkeypatch):
    """The entry point decides the device: $BLINDSPOT_DEVICE is a setting, not a library input."""
    monkeypatch.setenv("BLINDSPOT_DEVICE", "tpu")  # would be refused if the library read it
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.resolve_device().type == expected


def test_deterministic_restores_what_it_found():
    before = torch.are_deterministic_algorithms_enabled()
    with runtime.deterministic():
        assert torch.are_deterministic_algorithms_enabled()
        with runtime.deterministic(False):
            assert not torch.are_deterministic_algorithms_enabled()
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(runtime.DeviceError, match="CUDA is not available"):
        runtime.resolve_device("cuda")


@pytest.mark.parametrize("spec", ["tpu", "gpu0", "meta"])
def test_unknown_devices_are_rejected(spec):
    with pytest.raises(runtime.DeviceError):
        runtime.resolve_device(spec)


def test_seed_everything_makes_draws_repeatable():
    runtime.seed_everything(7)
    a = torch.rand(3)
    runtime.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
