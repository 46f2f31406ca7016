"""Minimum-norm attacks per norm: PDGD/PDPGD against the best published attacks, equal budgets.

On the LeNet-5 of ``make demo`` (3 epochs on 20,000 MNIST images) and the first ``--n`` test
images, each attack runs at 100, 500 and 1,000 steps; a wrapper counts the forward and backward
passes it makes through the model (per image), so budgets are compared in gradients, not in
steps. Peers come from adv_lib 0.2.8 (Rony et al.; it also packages the thesis authors' own
PDGD/PDPGD): ALMA and DDN (l2), FAB and FMN (l∞), ALMA and FMN (l1), σ-zero and FMN (l0). Every
result is measured here the same way: the returned images clamped into [0, 1], success = the
model's prediction differs from the label, the mean norm over images correct at the start and
fooled — and over the images every attack of that norm fooled, so success rates do not bias
the comparison. foolbox's FMN and DDN stay in ``bench.attack_bench``.

    python -m bench.minnorm_bench --out bench/results/attacks-per-norm.json [--n 200]
        [--steps 100,500,1000] [--norms l2,linf,l1,l0]

The grid runs in pieces: a run replaces only its (norms × steps) rows of ``--out`` and keeps
the others (when ``--n`` matches), writing after each piece.

adv_lib is installed without its dependencies (``make bench``): it imports torchvision (for its
LPIPS distance) and visdom (for optional logging) at import time, neither of which the norm
attacks use, and torchvision does not import beside the CPU build of torch; both are stubbed
here, in this benchmark only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench._machine import write_report
from bench.attack_bench import lenet5
from robustness import attacks, data
from robustness.threat import lp_norm

NORM_P = {"l2": 2.0, "linf": float("inf"), "l1": 1.0, "l0": 0.0}


class _Count(torch.autograd.Function):
    """Identity on the logits that counts the rows its backward pass carries."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, counter: Counted) -> torch.Tensor:
        ctx.counter = counter
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.counter.backwards += len(grad)
        return grad, None


class Counted(nn.Module):
    """The model, counting examples forwarded and examples backpropagated."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forwards = 0
        self.backwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += len(x)
        out = self.inner(x)
        return _Count.apply(out, self) if torch.is_grad_enabled() else out


def adv_lib_attacks() -> Any:
    """adv_lib's attacks module, with the two imports its norm attacks never use stubbed."""
    for name in ("torchvision", "torchvision.models", "visdom"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torchvision"].models = sys.modules["torchvision.models"]  # type: ignore[attr-defined]
    import adv_lib.attacks

    return adv_lib.attacks


def contenders(
    norm: str, steps: int
) -> dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]]:
    """name -> attack(model, x, y) returning adversarial images, at ``steps`` iterations."""
    ours: dict[str, Callable] = {}
    if norm == "l2":
        ours["ours PDGD"] = lambda m, x, y: attacks.build("pdgd", steps=steps)(m, x, y).x_adv
    ours["ours PDPGD"] = lambda m, x, y: (
        attacks.build("pdpgd", norm=norm, steps=steps)(m, x, y).x_adv
    )
    if norm == "l0":  # σ-zero's optimiser: Adam at lr 1 (with the l1 relaxation, as default)
        ours["ours PDPGD (Adam, lr 1)"] = lambda m, x, y: (
            attacks.build("pdpgd", norm=norm, steps=steps, optimizer="adam", lr=1.0)(m, x, y).x_adv
        )
    try:
        lib = adv_lib_attacks()
    except ImportError:
        return ours
    p = NORM_P[norm]
    peers: dict[str, Callable] = {}
    if norm == "l2":
        peers["authors' PDGD (adv_lib)"] = lambda m, x, y: lib.pdgd(m, x, y, num_steps=steps)
        peers["ALMA"] = lambda m, x, y: lib.alma(m, x, y, distance="l2", num_steps=steps)
        peers["DDN"] = lambda m, x, y: lib.ddn(m, x, y, steps=steps)
    else:
        peers["authors' PDPGD (adv_lib)"] = lambda m, x, y: lib.pdpgd(
            m, x, y, norm=p, num_steps=steps
        )
    if norm == "l1":
        peers["ALMA"] = lambda m, x, y: lib.alma(m, x, y, distance="l1", num_steps=steps)
    if norm == "linf":
        # FAB takes the gradients of all classes per iteration: a tenth of the iterations.
        peers["FAB"] = lambda m, x, y: lib.fab(m, x, y, norm=p, n_iter=max(steps // 10, 1))
    if norm == "l0":
        peers["sigma-zero"] = lambda m, x, y: lib.sigma_zero(m, x, y, num_steps=steps)
    peers["FMN"] = lambda m, x, y: lib.fmn(m, x, y, norm=p, steps=steps)
    return {**ours, **peers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/attacks-per-norm.json"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", default="100,500,1000")
    parser.add_argument("--norms", default="l2,linf,l1,l0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Rows of other (norm, steps) pairs already in --out are kept: the grid runs in pieces.
    kept = []
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("images") == args.n:
            kept = previous.get("results", [])
    device = torch.device("cpu")
    model = lenet5(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    test = data.load("mnist").test
    x, y = test.x[: args.n], test.y[: args.n]
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    rows: list[dict[str, Any]] = []
    for norm in args.norms.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            kept = [r for r in kept if (r["norm"], r["steps"]) != (norm, steps)]
            found: dict[str, dict[str, Any]] = {}
            for name, run in contenders(norm, steps).items():
                counted = Counted(model)
                torch.manual_seed(0)
                started = time.perf_counter()
                x_adv = run(counted, x, y).detach().clamp(0, 1)
                seconds = time.perf_counter() - started
                with torch.no_grad():
                    fooled = (model(x_adv).argmax(1) != y) & correct
                found[name] = {
                    "norms": lp_norm(x_adv - x, norm),
                    "fooled": fooled,
                    "forwards": counted.forwards / len(x),
                    "backwards": counted.backwards / len(x),
                    "seconds": seconds,
                }
            common = correct.clone()
            for result in found.values():
                common &= result["fooled"]
            for name, result in found.items():
                ok = result["fooled"]
                row = {
                    "norm": norm,
                    "steps": steps,
                    "attack": name,
                    "success_rate": round(ok.sum().item() / max(correct.sum().item(), 1), 4),
                    "mean_norm": round(result["norms"][ok].mean().item(), 4) if ok.any() else None,
                    "mean_norm_common": round(result["norms"][common].mean().item(), 4)
                    if common.any()
                    else None,
                    "common_images": int(common.sum()),
                    "gradients_per_image": round(result["backwards"], 1),
                    "forwards_per_image": round(result["forwards"], 1),
                    "seconds": round(result["seconds"], 1),
                }
                rows.append(row)
                print(
                    f"{norm} {steps:5d} {name:28s} success {row['success_rate']:.3f} "
                    f"mean {row['mean_norm']} (common {row['mean_norm_common']}) "
                    f"grads {row['gradients_per_image']}",
                    flush=True,
                )
            save(args, device, kept + rows)


def save(args: argparse.Namespace, device: torch.device, rows: list[dict[str, Any]]) -> None:
    """Write every row so far, ordered by norm, steps and contender."""
    order = {n: i for i, n in enumerate(NORM_P)}
    rows = sorted(rows, key=lambda r: (order[r["norm"]], r["steps"]))
    write_report(
        args.out,
        device,
        {
            "benchmark": "minimum-norm attacks per norm against adv_lib's peers at equal steps",
            "command": f"python -m bench.minnorm_bench --out {args.out} --n {args.n} "
            "--steps 100,500,1000 (run in pieces: --norms/--steps replace only their rows)",
            "model": "LeNet-5, 3 epochs on 20,000 MNIST images, seed 0 (make demo)",
            "images": args.n,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
