"""The thesis's MNIST tables at research scale on the CPU, cell by cell, with a verdict per claim.

Runs the ``research`` preset (robustness/tables.py) of Tables 3.1, 4.1 and 5.1 through the
registry, so an interrupted run resumes where it stopped (a model mid-training from its last
epoch, an evaluation from its last finished column), and several processes can share the grid
(``--network`` / ``--defense`` / ``--table`` pick their part). After every cell the results
file is rewritten under a lock: each finished cell with its numbers, the thesis's, its training
and evaluation wall time, then per table the aggregate and a verdict per claim
(robustness/claims.py). Cells already in the file are not run again, so the committed file
also resumes a run on a fresh machine.

    python -m bench.research --out bench/results/tables-research.json [--table table3.1]
        [--network lenet5] [--defense baseline,AT] [--threads 1]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

PRESET = "research"


@contextmanager
def locked(path: Path):
    """Exclusive lock on ``path``'s sidecar: processes sharing the file update it in turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def cell_record(table_name: str, cell: Any, started: float) -> dict[str, Any]:
    """A finished cell: its values in thesis units beside the thesis's, and its costs."""
    from robustness.registry.models import TrainedModel
    from robustness.tables import TABLES

    table = TABLES[table_name]
    entry = TrainedModel.objects.get(name=cell.model)
    thesis = table.thesis.get(cell.arch, {}).get(cell.row.label)
    values = {}
    for i, column in enumerate(table.columns):
        value = cell.values[column.label]
        values[column.label] = {
            "ours": None if value is None else round(value * column.scale, 5),
            "thesis": thesis[i] if thesis else None,
        }
    eval_seconds = sum(entry.metrics.get("reproduce_seconds", {}).values())
    history = entry.history or [{}]
    return {
        "model": cell.model,
        "network": cell.arch,
        "row": cell.row.label,
        "defense": entry.defense,
        "epochs": entry.epochs_done,
        "valid_error": history[-1].get("valid_error"),
        "values": values,
        # Time in training steps over every run of the cell (resumes included); the last
        # run's wall time also counts its per-epoch validation.
        "train_seconds": round(entry.train_seconds, 1),
        "last_run_wall_seconds": round(entry.wall_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "this_run_seconds": round(time.perf_counter() - started, 1),
        "hyperparameters": entry.hyperparameters,
    }


def summarise(report: dict[str, Any]) -> None:
    """Rebuild each table's aggregate and verdicts from its recorded cells (in place)."""
    from robustness.claims import verdicts
    from robustness.registry.reproduction import Cell, aggregate
    from robustness.tables import TABLES

    for name, part in report.get("tables", {}).items():
        table = TABLES[name]
        rows = {row.label: row for row in table.rows}
        cells = [
            Cell(
                c["network"],
                rows[c["row"]],
                0,
                c["model"],
                {
                    col.label: None
                    if c["values"][col.label]["ours"] is None
                    else c["values"][col.label]["ours"] / col.scale
                    for col in table.columns
                },
            )
            for c in part["cells"].values()
        ]
        part["aggregate"] = aggregate(table, cells, PRESET, 1, "cpu", 1000)
        part["verdicts"] = verdicts(name, part["aggregate"])
        part["cells_done"] = len(cells)
        part["cells_total"] = len(table.archs) * len(table.rows)
        part["train_hours"] = round(
            sum(c["train_seconds"] for c in part["cells"].values()) / 3600, 2
        )
        part["eval_hours"] = round(sum(c["eval_seconds"] for c in part["cells"].values()) / 3600, 2)


def markdown(report: dict[str, Any]) -> str:
    """The tables as docs/results.md shows them: ours (thesis) per cell, costs, verdicts."""
    from robustness.tables import TABLES

    out = []
    for name, part in report.get("tables", {}).items():
        table = TABLES[name]
        columns = [c.label for c in table.columns]
        out += [
            f"### {part['title']} ({part['cells_done']} of {part['cells_total']} cells)",
            "",
            "| network | row | epochs | " + " | ".join(columns) + " | train | eval |",
            "|---" * (len(columns) + 5) + "|",
        ]
        for arch in table.archs:
            for row in table.rows:
                cell = part["cells"].get(f"{arch}/{row.label}")
                if cell is None:
                    continue
                shown = []
                for label in columns:
                    value = cell["values"][label]
                    ours = "—" if value["ours"] is None else f"{value['ours']:.3g}"
                    thesis = "" if value["thesis"] is None else f" ({value['thesis']:g})"
                    shown.append(ours + thesis)
                out.append(
                    f"| {arch} | {row.label} | {cell['epochs']} | "
                    + " | ".join(shown)
                    + f" | {cell['train_seconds'] / 60:.0f} min"
                    + f" | {cell['eval_seconds'] / 60:.1f} min |"
                )
        out += [""] + [
            f"- **{v['verdict']}** — {v['text']}: {v['evidence']}" for v in part["verdicts"]
        ]
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/tables-research.json"))
    parser.add_argument("--table", action="append", help="table3.1, table4.1, table5.1 (all)")
    parser.add_argument("--network", help="only this network")
    parser.add_argument("--defense", help="only these rows (comma-separated thesis labels)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: one core)")
    parser.add_argument("--summarise", action="store_true", help="only rebuild the verdicts")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    torch.set_num_threads(args.threads)

    from bench._machine import machine
    from robustness.registry.reproduction import grid, reproduce_cell
    from robustness.tables import PRESETS, TABLES

    tables = args.table or list(TABLES)
    if args.markdown:
        print(markdown(load(args.out)))
        return
    if args.summarise:
        from robustness.registry.models import TrainedModel

        with locked(args.out):
            report = load(args.out)
            for part in report.get("tables", {}).values():
                for cell in part["cells"].values():  # costs refreshed where the entry is here
                    entry = TrainedModel.objects.filter(name=cell["model"]).first()
                    if entry is not None:
                        cell["train_seconds"] = round(entry.train_seconds, 1)
                        seconds = entry.metrics.get("reproduce_seconds", {})
                        cell["eval_seconds"] = round(sum(seconds.values()), 1)
            summarise(report)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
        return
    for name in tables:
        networks = [args.network] if args.network else None
        defenses = args.defense.split(",") if args.defense else None
        for arch, row, run in grid(name, 1, networks=networks, defenses=defenses):
            key = f"{arch}/{row}"
            if key in load(args.out).get("tables", {}).get(name, {}).get("cells", {}):
                continue
            started = time.perf_counter()
            print(f"{name} {key}: starting", flush=True)
            cell = reproduce_cell(
                table_name=name, preset_name=PRESET, arch=arch, row_label=row, run=run, device="cpu"
            )
            record = cell_record(name, cell, started)
            with locked(args.out):
                report = load(args.out)
                report.update(
                    {
                        "benchmark": "the thesis's MNIST tables, research preset, on the CPU",
                        "command": f"python -m bench.research --out {args.out}",
                        "preset": PRESETS[PRESET],
                        "machine": machine(torch.device("cpu")),
                    }
                )
                part = report.setdefault("tables", {}).setdefault(name, {"cells": {}})
                part["title"] = TABLES[name].title
                part["cells"][key] = record
                summarise(report)
                args.out.write_text(json.dumps(report, indent=1) + "\n")
            shown = ", ".join(
                f"{k} {v['ours']} ({v['thesis']})" for k, v in record["values"].items()
            )
            print(
                f"{name} {key}: {shown}; train {record['train_seconds']:.0f} s, "
                f"eval {record['eval_seconds']:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
