"""The real thing: LeNet-5 on real MNIST through the command line (slow)."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from robustness import data


@pytest.mark.slow
@pytest.mark.django_db
def test_lenet5_reaches_5_percent_test_error_in_3_epochs_on_20k_images(tmp_path, settings):
    try:
        data.load_mnist(cache_dir=settings.BLINDSPOT_DATA_DIR)
    except data.DataSourceError as exc:
        pytest.skip(f"no MNIST source: {exc}")
    out = tmp_path / "lenet5.json"
    call_command(
        "train",
        "--arch",
        "lenet5",
        "--defense",
        "none",
        "--epochs",
        "3",
        "--train-limit",
        "20000",
        "--seed",
        "0",
        "--model",
        "mnist-lenet5",
        "--device",
        "cpu",
        "--no-progress",
        "--json",
        str(out),
    )
    result = json.loads(out.read_text())
    assert result["test_error"] <= 0.05
    assert result["valid_error"] <= 0.05
    assert result["dataset"] == "mnist" and result["epochs"] == 3
