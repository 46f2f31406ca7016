"""``manage.py train``: train, register and evaluate one network under one defense."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from robustness import data, defenses, nets, runtime
from robustness.registry import jobs
from robustness.registry.cli import (
    BlindspotCommand,
    entity_option,
    param_option,
    positive_float,
    positive_int,
    write_json,
)
from robustness.registry.models import TrainedModel
from robustness.registry.progress import TqdmCallbacks
from robustness.registry.services import model_train
from robustness.training import SCHEDULES, TrainConfig


class Command(BlindspotCommand):
    help = "Train a network under a defense, register it, evaluate it and store its weights."
    interrupted = "interrupted; continue with: manage.py train --model {model} --resume"

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(
            parser, "model", aliases=("--name",), required=True, help="registry name of the model"
        )
        parser.add_argument("--arch", choices=nets.names(), help="network (see methods.md §2)")
        parser.add_argument("--defense", choices=defenses.names(), help="default: none")
        param_option(parser, help="defense hyper-parameter (repeatable)")
        parser.add_argument("--dataset", choices=data.DATASETS, help="default: mnist")
        parser.add_argument("--epochs", type=positive_int, help="default: 3")
        parser.add_argument(
            "--train-limit", type=positive_int, help="train on the first N training images only"
        )
        parser.add_argument("--seed", type=int, help="default: 0")
        parser.add_argument(
            "--schedule",
            choices=sorted(SCHEDULES),
            help="optimiser schedule of the thesis (default: the defense's chapter)",
        )
        parser.add_argument("--lr", type=positive_float, help="override the initial rate")
        parser.add_argument("--batch-size", type=positive_int, help="default: 100")
        parser.add_argument("--init", choices=nets.INITS, help="weight initialisation")
        parser.add_argument(
            "--device", choices=runtime.DEVICE_CHOICES, help="default: $BLINDSPOT_DEVICE or auto"
        )
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--resume",
            action="store_true",
            help="continue the registered run MODEL from its last checkpoint",
        )
        group.add_argument(
            "--replace",
            action="store_true",
            help="discard an existing model MODEL and train it again",
        )
        parser.add_argument(
            "--json", type=Path, metavar="PATH", help="write the result as one JSON object to PATH"
        )
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="train on a job-queue worker instead (prints the job id; docs/deployment.md)",
        )

    def _queue(self, config: TrainConfig | None, opts: dict[str, Any]) -> None:
        """Send the run as a job; a worker trains it (or resumes it, from its checkpoint)."""
        name = opts["model"]
        existing = TrainedModel.objects.filter(name=name).first()
        if existing is not None and not opts["resume"]:
            raise CommandError(
                f"a model named {name!r} already exists; --resume continues it on a worker"
                + ("" if not opts["replace"] else " (--replace is not queued: delete it first)")
            )
        if existing is None and opts["resume"]:
            raise CommandError(f"no model named {name!r} to resume")
        params: dict[str, Any] = {"name": name, "device": opts["device"]}
        if config is not None:
            params["config"] = config.to_dict()
        if opts["epochs"] and opts["resume"]:
            params["epochs"] = opts["epochs"]
        job = jobs.job_create(kind="train", params=params, label=name)
        jobs.jobs_send([job])
        self.stdout.write(
            f"job {job.pk}: {name} queued — `manage.py jobs wait {job.pk}` follows it"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        config = None if opts["resume"] else self._config(opts)
        if opts["resume"]:
            given = [
                f"--{k.replace('_', '-')}"
                for k in (
                    "arch",
                    "defense",
                    "dataset",
                    "train_limit",
                    "seed",
                    "schedule",
                    "lr",
                    "batch_size",
                    "init",
                )
                if opts[k] is not None
            ] + (["--param"] if opts["param"] else [])
            if given:
                raise CommandError(
                    f"--resume takes the configuration from the registry; drop {', '.join(given)}"
                )
        if opts["queue"]:
            self._queue(config, opts)
            return
        progress = TqdmCallbacks(
            batch_size=(config.batch_size if config else 100), disable=opts["no_progress"]
        )
        try:
            row = model_train(
                name=opts["model"],
                config=config,
                device=opts["device"],
                resume=opts["resume"],
                replace=opts["replace"],
                epochs=opts["epochs"] if opts["resume"] else None,
                callbacks=progress,
            )
        finally:
            progress.close()

        result = summary(row)
        self.stdout.write(
            f"{row.name}: {row.arch}/{row.defense}, {row.epochs_done} epochs on {row.device}: "
            f"test error {100 * result['test_error']:.2f}% (valid "
            f"{100 * result['valid_error']:.2f}%), {result['train_seconds']:.1f} s training, "
            f"{result['images_per_second']:.0f} img/s"
        )
        self.stdout.write(f"weights sha256 {row.weights_sha256}; checkpoint {result['checkpoint']}")
        write_json(opts["json"], result)

    def _config(self, opts: dict[str, Any]) -> TrainConfig:
        if not opts["arch"]:
            raise CommandError(
                f"--arch is required to train a new model (one of: {', '.join(nets.names())})"
            )
        params = dict(opts["param"])
        defense = opts["defense"] or "none"
        return TrainConfig.from_schedule(
            opts["schedule"] or defenses.get_class(defense).schedule,
            arch=opts["arch"],
            defense=defense,
            defense_params=params,
            dataset=opts["dataset"] or "mnist",
            epochs=opts["epochs"] or 3,
            train_limit=opts["train_limit"],
            seed=opts["seed"] if opts["seed"] is not None else 0,
            lr=opts["lr"],
            batch_size=opts["batch_size"] or 100,
            init=opts["init"] or "torch",
        )


def summary(row: Any) -> dict[str, Any]:
    """The JSON record of a trained model (the `--json` output)."""
    storage = row.checkpoint.storage
    try:
        where = storage.path(row.checkpoint.name)
    except NotImplementedError:  # remote storage (S3): report its URL-less name
        where = row.checkpoint.name
    return {
        "name": row.name,
        "arch": row.arch,
        "defense": row.defense,
        "defense_params": row.hyperparameters.get("defense_params", {}),
        "dataset": row.dataset,
        "epochs": row.epochs_done,
        "train_limit": row.hyperparameters.get("train_limit"),
        "seed": row.seed,
        "device": row.device,
        "test_error": row.metrics.get("test_error"),
        "valid_error": row.metrics.get("valid_error"),
        "train_seconds": row.train_seconds,
        "images_per_second": row.metrics.get("images_per_second"),
        "checkpoint": where,
        "weights_sha256": row.weights_sha256,
    }
