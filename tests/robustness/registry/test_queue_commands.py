"""The commands' --queue side without a worker: what they send (a job per unit, ids only),
and one line when the broker is down."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from robustness.registry.models import Job, TrainedModel

pytestmark = pytest.mark.django_db


def queued(app, queue: str) -> list[int]:
    ids = []
    with app.connection_for_write() as conn, conn.SimpleQueue(queue) as q:
        while q.qsize():
            message = q.get(timeout=1)
            ids.append(
                message.payload[0][0] if isinstance(message.payload, list) else message.payload
            )
            message.ack()
    return ids


def test_train_queue_sends_one_job_with_the_configuration(memory_broker):
    out = io.StringIO()
    args = ["--model", "q1", "--arch", "mlp1200", "--dataset", "synthetic", "--epochs", "2"]
    call_command("train", *args, "--queue", stdout=out)
    job = Job.objects.get()
    assert job.kind == "train" and job.params["name"] == "q1"
    assert job.params["config"]["epochs"] == 2 and job.queue == "gpu"
    assert f"job {job.pk}" in out.getvalue()
    assert not TrainedModel.objects.exists()  # nothing trained here


def test_reproduce_queue_sends_a_parent_and_one_cell_per_model(memory_broker):
    out = io.StringIO()
    args = ["table4.1", "--preset", "tiny", "--dataset", "synthetic", "--runs", "2"]
    call_command(
        "reproduce", *args, "--network", "lenet5", "--defense", "none,AT", "--queue", stdout=out
    )
    parent = Job.objects.get(parent__isnull=True)
    cells = parent.children.order_by("pk")
    assert [(c.params["arch"], c.params["row"], c.params["run"]) for c in cells] == [
        ("lenet5", "none", 0),
        ("lenet5", "AT", 0),
        ("lenet5", "none", 1),
        ("lenet5", "AT", 1),
    ]
    assert all("/" not in str(v) for c in cells for v in c.params.values() if v)
    assert f"job {parent.pk}: 4 cells queued" in out.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ["reproduce", "table4.1", "--preset", "tiny", "--queue"],
        ["train", "--model", "q2", "--arch", "mlp1200", "--dataset", "synthetic", "--queue"],
    ],
)
def test_broker_down_is_one_line_and_sends_nothing(settings, args):
    from config.celery import app

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    app.close()
    try:
        with pytest.raises(CommandError, match=r"queue at redis://127.0.0.1:1/0 is unreachable"):
            call_command(*args, stdout=io.StringIO())
    finally:
        app.close()
    assert not Job.objects.filter(state=Job.State.RUNNING).exists()


def test_unknown_cells_are_refused(memory_broker):
    with pytest.raises(CommandError, match="has no resnet"):
        call_command("reproduce", "table4.1", "--network", "resnet", "--queue")
    assert not Job.objects.exists()


def test_wait_needs_queue():
    with pytest.raises(CommandError, match="--wait goes with --queue"):
        call_command("reproduce", "table4.1", "--wait")
