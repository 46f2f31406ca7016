"""Training throughput per network (engine vs. a bare PyTorch loop) and per defense (vs. none).

Writes one JSON file with the machine described. The bare loop (forward, cross-entropy,
backward, Adam step on pre-made batches) is the baseline measured in the same run, so the
engine's overhead (shuffling, defense call, bookkeeping) shows as a ratio.

    python -m bench.train_bench --out bench/results/train.json [--device cuda] [--images 3000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench._machine import write_report
from robustness import data, defenses, nets, runtime
from robustness.training import TrainConfig, fit

# (network, input shape, images per measurement relative to --images)
NETWORKS = [
    ("mlp1000", (1, 28, 28), 1.0),
    ("mlp1200", (1, 28, 28), 1.0),
    ("lenet5", (1, 28, 28), 1.0),
    ("madry_cnn", (1, 28, 28), 0.5),
    ("critic", (1, 28, 28), 1.0),
    ("nin", (3, 32, 32), 0.1),
]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(arch: str, x: torch.Tensor, y: torch.Tensor, batch: int, repeats: int) -> float:
    """Images/s of the plainest training loop over pre-split batches (the baseline)."""
    torch.manual_seed(0)
    model = nets.build(arch, in_shape=tuple(x.shape[1:])).to(x.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = list(zip(x.split(batch), y.split(batch), strict=True))
    for xb, yb in batches[:2]:  # warm-up
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    best = 0.0
    for _ in range(repeats):
        synchronize(x.device)
        start = time.perf_counter()
        for xb, yb in batches:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        synchronize(x.device)
        best = max(best, len(x) / (time.perf_counter() - start))
    return best


def engine(
    arch: str,
    dataset: data.Dataset,
    batch: int,
    device: torch.device,
    repeats: int,
    defense: str = "none",
) -> float:
    """Images/s of ``training.fit`` in its last epoch (validation excluded, as fit reports it).

    Two epochs, so that a defense with a pre-training epoch (the critic) is timed in its real
    training phase; every defense is timed the same way.
    """
    best = 0.0
    epochs = 2 if defense == "critic" else 1
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            config = TrainConfig.from_schedule(
                defenses.get_class(defense).schedule,
                arch=arch,
                defense=defense,
                dataset="synthetic",
                epochs=epochs,
                batch_size=batch,
            )
            result = fit(config, dataset, device=device, checkpoint_path=Path(tmp) / "c.pt")
            best = max(best, result.history[-1]["images_per_second"])
    return best


def defense_costs(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Training images/s per defense and network, and the cost per image relative to none."""
    rows = []
    for arch in args.defense_networks.split(","):
        n = args.defense_images // args.batch_size * args.batch_size
        dataset = data.synthetic(n_train=n, n_valid=args.batch_size, n_test=args.batch_size)
        speeds = {}
        for defense in args.defenses.split(","):
            speeds[defense] = engine(arch, dataset, args.batch_size, device, 1, defense)
            cost = speeds["none"] / speeds[defense] if "none" in speeds else None
            rows.append(
                {
                    "network": arch,
                    "defense": defense,
                    "images": n,
                    "images_per_second": round(speeds[defense], 1),
                    "cost_vs_none": None if cost is None else round(cost, 2),
                }
            )
            print(
                f"{arch:10s} {defense:8s} {speeds[defense]:9.1f} img/s   "
                f"cost x{'?' if cost is None else f'{cost:.1f}'} of none",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--images", type=int, default=3000, help="images per measurement")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="best of N")
    parser.add_argument("--networks", default=",".join(n for n, _, _ in NETWORKS))
    parser.add_argument(
        "--defenses",
        default="none,dropout,at,vat,margin,critic,pgd",
        help="defenses to time relative to none ('' to skip)",
    )
    parser.add_argument("--defense-networks", default="mlp1200,lenet5")
    parser.add_argument("--defense-images", type=int, default=1000)
    args = parser.parse_args()

    try:
        device = runtime.resolve_device(args.device)
    except runtime.DeviceError as exc:
        parser.exit(2, f"error: {exc}\n")
    wanted = args.networks.split(",")
    unknown = sorted(set(wanted) - {n for n, _, _ in NETWORKS})
    if unknown:
        parser.exit(2, f"error: unknown network(s) {', '.join(unknown)}\n")
    with runtime.deterministic():
        run(args, device, wanted)


def run(args: argparse.Namespace, device, wanted: list[str]) -> None:  # noqa: ANN001
    """Time every network, then every defense, and write the report."""
    results = []
    for arch, shape, share in NETWORKS:
        if arch not in wanted:
            continue
        n = max(args.batch_size * 2, int(args.images * share) // args.batch_size * args.batch_size)
        dataset = data.synthetic(
            n_train=n, n_valid=args.batch_size, n_test=args.batch_size, shape=shape, seed=0
        )
        x, y = dataset.train.x.to(device), dataset.train.y.to(device)
        base = bare_loop(arch, x, y, args.batch_size, args.repeats)
        ours = engine(arch, dataset, args.batch_size, device, args.repeats)
        row = {
            "network": arch,
            "parameters": nets.count_parameters(nets.build(arch, in_shape=shape)),
            "input_shape": list(shape),
            "batch_size": args.batch_size,
            "images": n,
            "engine_images_per_second": round(ours, 1),
            "baseline_images_per_second": round(base, 1),
            "engine_over_baseline": round(ours / base, 3),
        }
        results.append(row)
        print(
            f"{arch:10s} engine {ours:9.0f} img/s   bare loop {base:9.0f} img/s   "
            f"ratio {ours / base:.2f}",
            flush=True,
        )

    report = {
        "benchmark": "training throughput (images/s, forward+backward+Adam, best of repeats)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "deterministic_algorithms": True,
        "results": results,
        "defenses": defense_costs(args, device) if args.defenses else [],
    }
    write_report(args.out, device, report)


if __name__ == "__main__":
    main()
