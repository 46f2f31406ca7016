"""Reproduce a thesis table: train its grid as registered models, measure, aggregate.

Every cell is a registry entry named after the table, preset, network, defense and run, so an
interrupted grid resumes where it stopped (finished models are reused, unfinished ones
resumed) and measurements already made are read back from the entry's metrics.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustness import attacks, evaluation, load_model
from robustness.defenses.critic import CRITIC_MILESTONES
from robustness.errors import ConfigError
from robustness.registry.files import checkpoint_file, dataset_load, device_for
from robustness.registry.models import TrainedModel
from robustness.registry.services import model_train
from robustness.tables import (
    PRESETS,
    TABLES,
    Column,
    Row,
    Table,
    preset_epochs,
    scaled_milestones,
)
from robustness.training import SCHEDULES, Callbacks, TrainConfig, TrainingError


@dataclass
class Cell:
    arch: str
    row: Row
    run: int
    model: str
    values: dict[str, float | None]


def cell_name(table: Table, preset: str, arch: str, row: Row, run: int) -> str:
    label = re.sub(r"[^A-Za-z0-9]+", "-", row.label).strip("-").lower()
    return f"{table.name.replace('table', 't')}-{preset}-{arch}-{label}-r{run}"


def cell_config(
    table: Table,
    preset: dict[str, Any],
    arch: str,
    row: Row,
    run: int,
    epochs: int | None,
    dataset: str = "mnist",
) -> TrainConfig:
    """The training configuration of one cell: the table's schedule, the preset's budget."""
    overrides = preset["defense_overrides"]
    params = {
        **row.params,
        **overrides.get(row.defense, {}),
        **overrides.get(f"{table.name}/{row.label}", {}),
    }
    epochs = epochs or preset_epochs(preset, table, arch, row)
    schedule: dict[str, Any] = {}
    if preset.get("scale_schedule") and epochs < table.epochs:
        # The schedule compressed to the shorter run: the same final learning rate.
        defaults = SCHEDULES[table.schedule]
        if defaults["lr_decay"] == "exponential":
            schedule["gamma"] = defaults["gamma"] ** (table.epochs / epochs)
        schedule["milestones"] = scaled_milestones(defaults.get("milestones", ()), epochs, table)
        if row.defense == "critic":
            params["milestones"] = scaled_milestones(CRITIC_MILESTONES, epochs, table)
    return TrainConfig.from_schedule(
        table.schedule,
        arch=arch,
        defense=row.defense,
        defense_params=params,
        epochs=epochs,
        train_limit=preset["train_limit"],
        seed=run,
        batch_size=table.batch_size,
        lr=table.lr,
        dataset=dataset,
        **schedule,
    )


def measure(
    column: Column,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    overrides: dict[str, dict[str, Any]],
    results: dict[str, Any] | None = None,
) -> float | None:
    """One column's number for one model (before display scaling). ``results`` caches attack
    results per attack and settings, so two columns of one attack (ρ and success) run it once."""
    if column.kind == "error":
        return 1.0 - correct.sum().item() / len(correct)
    assert column.attack is not None
    params = {**column.params, **overrides.get(column.attack, {})}
    key = f"{column.attack}:{sorted(params.items())}"
    cache = {} if results is None else results
    if key not in cache:
        attack = attacks.build(column.attack, **params)
        cache[key] = evaluation.run_attack(attack, model, x, y).result
    result = cache[key]
    if column.kind == "fgsm":
        return 1.0 - (correct & ~result.success).sum().item() / len(correct)
    if column.kind == "rho":
        return evaluation.average_robustness(x, result, correct)["rho"]
    if column.kind == "norm":
        return evaluation.min_norm_summary(result, correct, thresholds=())["mean_norm"]
    if column.kind == "success":
        return evaluation.average_robustness(x, result, correct)["success_rate"]
    raise ValueError(f"unknown column kind {column.kind!r}")


def grid(
    table_name: str,
    runs: int = 1,
    *,
    networks: Sequence[str] | None = None,
    defenses: Sequence[str] | None = None,
) -> list[tuple[str, str, int]]:
    """The cells of a table: (network, row label, run), in the order they are reported;
    ``networks`` and ``defenses`` (row labels) keep a part of it. Unknown names are refused."""
    table = TABLES[table_name]
    archs = list(networks or table.archs)
    labels = list(defenses or [row.label for row in table.rows])
    unknown = [a for a in archs if a not in table.archs] + [
        d for d in labels if d not in {row.label for row in table.rows}
    ]
    if unknown:
        known = ", ".join([*table.archs, *(row.label for row in table.rows)])
        raise ConfigError(f"{table_name} has no {', '.join(unknown)} (it has {known})")
    return [
        (arch, row.label, run)
        for run in range(runs)
        for arch in table.archs
        for row in table.rows
        if arch in archs and row.label in labels
    ]


def reproduce_cell(
    *,
    table_name: str,
    preset_name: str,
    arch: str,
    row_label: str,
    run: int,
    epochs: int | None = None,
    device: str | None = None,
    dataset: str = "mnist",
    callbacks: Callable[[str], Callbacks | None] | None = None,
    test_cache: dict[str, Any] | None = None,
) -> Cell:
    """Train (or resume, or reuse) one cell's model and measure it (or read its measures)."""
    table = TABLES[table_name]
    preset = PRESETS[preset_name]
    row = next((r for r in table.rows if r.label == row_label), None)
    if row is None or arch not in table.archs:
        raise ValueError(f"{table_name} has no cell {arch}/{row_label}")
    torch_device = device_for(device)
    eval_limit = preset["eval_limit"] or table.eval_limit
    name = cell_name(table, preset_name, arch, row, run)
    config = cell_config(table, preset, arch, row, run, epochs, dataset)
    entry = _trained(name, config, torch_device, callbacks)
    cache = {} if test_cache is None else test_cache
    values = _measured(entry, table, preset, eval_limit, torch_device, cache)
    return Cell(arch, row, run, name, values)


def reproduce(
    *,
    table_name: str,
    preset_name: str = "smoke",
    runs: int = 1,
    epochs: int | None = None,
    device: str | None = None,
    dataset: str = "mnist",
    on_cell: Callable[[Cell], None] | None = None,
    callbacks: Callable[[str], Callbacks | None] | None = None,
    networks: Sequence[str] | None = None,
    defenses: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train and measure every cell of ``table_name`` ``runs`` times; return the aggregate.

    Cells already trained and measured (in-process, or by the job queue's workers) are read
    back, so the same call collects a grid the queue computed.
    """
    table = TABLES[table_name]
    preset = PRESETS[preset_name]
    torch_device = device_for(device)
    eval_limit = preset["eval_limit"] or table.eval_limit
    cells: list[Cell] = []
    test_cache: dict[str, Any] = {}
    for arch, row_label, run in grid(table_name, runs, networks=networks, defenses=defenses):
        cell = reproduce_cell(
            table_name=table_name,
            preset_name=preset_name,
            arch=arch,
            row_label=row_label,
            run=run,
            epochs=epochs,
            device=device,
            dataset=dataset,
            callbacks=callbacks,
            test_cache=test_cache,
        )
        cells.append(cell)
        if on_cell:
            on_cell(cell)
    return aggregate(table, cells, preset_name, runs, str(torch_device), eval_limit)


def _trained(
    name: str,
    config: TrainConfig,
    device: torch.device,
    callbacks: Callable[[str], Callbacks | None] | None,
) -> TrainedModel:
    entry = TrainedModel.objects.filter(name=name).first()
    progress = callbacks(name) if callbacks else None
    if entry is None:
        return model_train(name=name, config=config, device=str(device), callbacks=progress)
    # Both sides through TrainConfig, so an entry stored before a field existed reads that
    # field's default rather than differing from it.
    try:
        known = TrainConfig.from_dict(entry.hyperparameters).to_dict()
    except (TypeError, ValueError, TrainingError):
        known = dict(entry.hyperparameters)
    stored = {k: v for k, v in json.loads(json.dumps(known)).items() if k != "epochs"}
    wanted = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k != "epochs"}
    if stored != wanted:
        changed = sorted(k for k in wanted.keys() | stored.keys() if stored.get(k) != wanted.get(k))
        raise ConfigError(
            f"{name} was trained with other settings ({', '.join(changed)} differ from the "
            f"preset's); delete it with `manage.py models --delete {name}` to train it again"
        )
    if entry.status == TrainedModel.Status.DONE and entry.epochs_done >= config.epochs:
        return entry
    return model_train(
        name=name, device=str(device), resume=True, epochs=config.epochs, callbacks=progress
    )


def _measured(
    entry: TrainedModel,
    table: Table,
    preset: dict[str, Any],
    eval_limit: int | None,
    device: torch.device,
    test_cache: dict[str, Any],
) -> dict[str, float | None]:
    """Each column's value, read from the registry entry when measured before."""
    stored = dict(entry.metrics.get("reproduce", {}))
    suffix = f"|limit={eval_limit}|{sorted(preset['attack_overrides'].items())}"
    if preset.get("attack_limits"):
        suffix += f"|{sorted(preset['attack_limits'].items())}"
    missing = [c for c in table.columns if c.key + suffix not in stored]
    if missing:
        if entry.dataset not in test_cache:
            test_cache[entry.dataset] = dataset_load(entry.dataset).test.limit(eval_limit)
        test = test_cache[entry.dataset].to(device)
        with checkpoint_file(entry) as path:
            model = load_model(path, device=device)
        correct = evaluation.predict(model, test.x) == test.y
        results: dict[str, Any] = {}
        seconds = dict(entry.metrics.get("reproduce_seconds", {}))
        limits = preset.get("attack_limits", {})
        for column in missing:
            started = time.perf_counter()
            n = limits.get(column.attack, len(test.x))  # the costliest attacks: fewer images
            stored[column.key + suffix] = measure(
                column,
                model,
                test.x[:n],
                test.y[:n],
                correct[:n],
                preset["attack_overrides"],
                results,
            )
            seconds[column.key + suffix] = round(time.perf_counter() - started, 2)
            # Saved after each column: an interrupted evaluation keeps what it measured.
            entry.metrics = {**entry.metrics, "reproduce": stored, "reproduce_seconds": seconds}
            entry.save(update_fields=["metrics", "updated"])
    return {c.label: stored[c.key + suffix] for c in table.columns}


def aggregate(
    table: Table, cells: list[Cell], preset: str, runs: int, device: str, eval_limit: int | None
) -> dict[str, Any]:
    """Mean ± std per network, defense and column (in thesis units), with the thesis's numbers."""
    out: dict[str, Any] = {
        "table": table.name,
        "title": table.title,
        "preset": preset,
        "runs": runs,
        "device": device,
        "eval_limit": eval_limit,
        "columns": [c.label for c in table.columns],
        "networks": {},
    }
    for arch in table.archs:
        rows = {}
        for row in table.rows:
            mine = [c for c in cells if c.arch == arch and c.row.label == row.label]
            if not mine:
                continue  # a part of the grid (--network, --defense) was asked for
            entry = {}
            for i, column in enumerate(table.columns):
                values = [
                    value * column.scale
                    for c in mine
                    if (value := c.values[column.label]) is not None
                ]
                thesis = table.thesis.get(arch, {}).get(row.label)
                entry[column.label] = {
                    "mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "n": len(values),
                    "thesis": thesis[i] if thesis else None,
                }
            rows[row.label] = {"models": [c.model for c in mine], "values": entry}
        if rows:
            out["networks"][arch] = rows
    return out


def format_table(report: dict[str, Any]) -> str:
    """The thesis's layout: one block per network, rows = defenses, ours next to the thesis."""
    lines = [
        f"{report['title']} — preset {report['preset']}, {report['runs']} run(s), "
        f"{report['device']}, {report['eval_limit'] or 'all'} test images"
    ]
    columns = report["columns"]
    for arch, rows in report["networks"].items():
        header = f"{arch:10s}" + "".join(f"{c:>24s}" for c in columns)
        lines += ["", header, " " * 10 + "".join(f"{'ours (thesis)':>24s}" for _ in columns)]
        for label, row in rows.items():
            cells = []
            for c in columns:
                v = row["values"][c]
                ours = "—" if v["mean"] is None else f"{v['mean']:.3g} ± {v['std']:.2g}"
                thesis = "—" if v["thesis"] is None else f"{v['thesis']:g}"
                cells.append(f"{ours} ({thesis})")
            lines.append(f"{label:10s}" + "".join(f"{cell:>24s}" for cell in cells))
    return "\n".join(lines)
