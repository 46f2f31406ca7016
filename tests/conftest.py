"""Shared fixtures: every test writes its files under its own tmp_path."""

from __future__ import annotations

import os

import pytest
from django.core.cache import cache
from django.core.files.storage import FileSystemStorage


@pytest.fixture(autouse=True)
def isolated_files(settings, tmp_path, monkeypatch):
    """Point run folders, media and checkpoints at tmp_path (the MNIST cache is shared)."""
    from robustness.registry.models import TrainedModel

    settings.BLINDSPOT_RUNS_DIR = tmp_path / "runs"
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # cached study results must not outlive the test that made them
    field = TrainedModel._meta.get_field("checkpoint")
    monkeypatch.setattr(field, "storage", FileSystemStorage(location=tmp_path / "artifacts"))


def pytest_configure(config):
    """Under pytest-xdist, share the cores between the workers instead of oversubscribing them
    (each worker's torch would otherwise start one thread per core)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny tensors: more only add overhead there."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Skip what this machine cannot run, saying why (shown by -ra in the summary)."""
    import shutil

    import torch
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    reasons = {
        "gpu": None if torch.cuda.is_available() else "no CUDA device on this machine",
        "postgres": None
        if "postgresql" in engine
        else "DATABASE_URL is not PostgreSQL (CI sets it)",
        "browser": None if shutil.which("chromium") else "Debian's chromium is not installed",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def memory_broker(settings):
    """The real Celery app on kombu's in-memory transport (no worker: messages wait there)."""
    from config.celery import app

    settings.CELERY_BROKER_URL = "memory://"
    app.close()  # a pooled connection to an earlier test's broker must not be reused
    _drain(app)
    yield app
    _drain(app)
    app.close()


def _drain(app) -> None:
    """Empty the in-memory queues (they live as long as the process)."""
    with app.connection_for_write() as conn:
        for name in ("gpu", "cpu"):
            with conn.SimpleQueue(name) as queue:
                queue.clear()
