"""Attack throughput and strength, side by side with foolbox 3.3.4 on the same model and images.

For each attack: images/s, gradient evaluations per image, mean norm, and the cost of the
bare forward/backward passes it made (timed on the same chunk in the same run), so the
overhead ratio = attack time / bare-pass time shows what is left to remove. Where foolbox is
installed (``pip install -e '.[bench]'``), its DeepFool, C&W, DDN and FMN run on the same
inputs at comparable settings. The model is a LeNet-5 trained as in ``make demo``.

    python -m bench.attack_bench --out bench/results/attacks.json [--device cuda] [--n 500]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench._machine import write_report
from robustness import attacks, data, load_model, runtime
from robustness.attacks.base import class_gradients
from robustness.threat import lp_norm
from robustness.training import TrainConfig, fit

CACHE = Path(__file__).resolve().parent.parent / "var" / "bench"
DATA = Path(__file__).resolve().parent.parent / "var" / "data"  # the MNIST cache make demo fills


def lenet5(device: torch.device) -> torch.nn.Module:
    """LeNet-5, 3 epochs on 20k MNIST images, seed 0 (the demo model), cached in var/bench."""
    path = CACHE / "lenet5-demo.pt"
    if not path.exists():
        config = TrainConfig.from_schedule("ch3", arch="lenet5", epochs=3, train_limit=20000)
        fit(config, data.load_mnist(cache_dir=DATA), device=device, checkpoint_path=path)
    return load_model(path, device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def bare_pass_seconds(model, x, y, *, all_classes: bool, repeats: int = 3) -> float:
    """Seconds per example of one forward+backward w.r.t. the input (best of repeats)."""

    def once():
        if all_classes:
            return class_gradients(model, x)
        xr = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xr), y, reduction="sum")
            return torch.autograd.grad(loss, xr)

    once()
    best = min(timed(once, x.device)[1] for _ in range(repeats))
    return best / len(x)


def ours(name: str, params: dict, model, x, y, correct, *, all_classes: bool = False) -> dict:
    attack = attacks.build(name, **params)
    result, seconds = timed(lambda: attack(model, x, y), x.device)
    per_pass = bare_pass_seconds(model, x, y, all_classes=all_classes)
    evals = result.grad_evals.sum().item()
    ok = correct & result.success
    return {
        "implementation": "blindspot",
        "attack": name,
        "params": params,
        "norm": result.norm,
        "images": len(x),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(x) / seconds, 2),
        "grad_evals_per_image": round(evals / len(x), 2),
        "steps": params.get("steps"),
        "bare_pass_seconds": round(evals * per_pass, 3),
        "overhead_ratio": round(seconds / (evals * per_pass), 3) if evals else None,
        "success_rate": round(result.success[correct].float().mean().item(), 4),
        "mean_norm": round(result.norms[ok].mean().item(), 5) if ok.any() else None,
        "median_norm": round(result.norms[ok].median().item(), 5) if ok.any() else None,
        "_per_example": (result.norms, ok),
    }


def theirs(label: str, attack, norm: str, model, x, y, correct, steps: int | None = None) -> dict:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    (raw, clipped, success), seconds = timed(lambda: attack(fmodel, x, y, epsilons=None), x.device)
    success = success.view(-1)
    model_pred = model(clipped).argmax(1)
    success = success & (model_pred != y)
    norms = lp_norm(clipped - x, norm)
    ok = correct & success
    return {
        "implementation": "foolbox-3.3.4",
        "attack": label,
        "steps": steps,
        "norm": norm,
        "images": len(x),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(x) / seconds, 2),
        "success_rate": round(success[correct].float().mean().item(), 4),
        "mean_norm": round(norms[ok].mean().item(), 5) if ok.any() else None,
        "median_norm": round(norms[ok].median().item(), 5) if ok.any() else None,
        "_per_example": (norms, ok),
    }


def compare_on_common(a: dict, b: dict) -> None:
    """Mean norms of two attacks over the images both fooled (success rates can differ)."""
    (na, oka), (nb, okb) = a["_per_example"], b["_per_example"]
    both = oka & okb
    for row, norms in ((a, na), (b, nb)):
        row["mean_norm_on_common"] = round(norms[both].mean().item(), 5) if both.any() else None
        row["common_images"] = int(both.sum().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/attacks.json"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=500, help="images for the fast attacks")
    parser.add_argument("--n-slow", type=int, default=100, help="images for C&W, HC, PD(P)GD")
    parser.add_argument(
        "--steps", default="100,500", help="iteration budgets of PDGD/PDPGD/FMN/DDN (comma list)"
    )
    parser.add_argument("--no-foolbox", action="store_true")
    args = parser.parse_args()
    try:
        device = runtime.resolve_device(args.device)
    except runtime.DeviceError as exc:
        parser.exit(2, f"error: {exc}\n")

    model = lenet5(device)
    test = data.load_mnist(cache_dir=DATA).test.to(device)
    x, y = test.x[: args.n], test.y[: args.n]
    xs, ys = x[: args.n_slow], y[: args.n_slow]
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    cs = correct[: args.n_slow]

    have_foolbox = not args.no_foolbox
    if have_foolbox:
        try:
            import foolbox as fb
        except ImportError:
            print("foolbox not installed: pip install -e '.[bench]'", file=sys.stderr)
            have_foolbox = False

    rows = []

    def add(row: dict) -> None:
        rows.append(row)
        mean = row["mean_norm"]
        print(
            f"{row['implementation']:13s} {row['attack']:10s} {row['norm']:5s} "
            f"{row['images_per_second']:9.1f} img/s  mean norm "
            f"{'—' if mean is None else f'{mean:.4f}'}  success {row['success_rate']:.3f}"
            + (f"  overhead {row['overhead_ratio']}" if row.get("overhead_ratio") else ""),
            flush=True,
        )

    df = {"norm": "l2", "steps": 50, "overshoot": 0.02, "clip": None, "box": "clamp"}
    add(ours("deepfool", df, model, x, y, correct, all_classes=True))
    if have_foolbox:
        fb_df = fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02)
        add(theirs("L2DeepFool", fb_df, "l2", model, x, y, correct))
    add(ours("fgsm", {"eps": 0.2}, model, x, y, correct))
    add(ours("pgd", {"norm": "linf", "eps": 0.1, "step": 0.01, "steps": 40}, model, x, y, correct))
    add(ours("hc", {}, model, xs, ys, cs, all_classes=False))
    cw = {"binary_steps": 5, "steps": 200, "initial_const": 1e-2, "lr": 0.01}
    add(ours("cw", cw, model, xs, ys, cs))
    if have_foolbox:
        fb_cw = fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=5, steps=200, stepsize=0.01, initial_const=1e-2
        )
        add(theirs("L2CarliniWagner", fb_cw, "l2", model, xs, ys, cs))
    for steps in (int(v) for v in args.steps.split(",")):
        if have_foolbox:
            add(theirs("DDN", fb.attacks.DDNAttack(steps=steps), "l2", model, xs, ys, cs, steps))
        add(ours("pdgd", {"steps": steps}, model, xs, ys, cs))
        for norm, fmn in (
            ("linf", "LInfFMNAttack"),
            ("l2", "L2FMNAttack"),
            ("l1", "L1FMNAttack"),
            ("l0", "L0FMNAttack"),
        ):
            add(ours("pdpgd", {"norm": norm, "steps": steps}, model, xs, ys, cs))
            if have_foolbox:
                cls = getattr(fb.attacks, fmn)
                add(theirs(fmn, cls(steps=steps), norm, model, xs, ys, cs, steps))
                compare_on_common(rows[-2], rows[-1])

    for row in rows:
        row.pop("_per_example", None)
    report = {
        "benchmark": "attacks on LeNet-5 (demo model), first test images",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "clean_accuracy": round(correct.float().mean().item(), 4),
        "notes": (
            "overhead_ratio = attack seconds / (gradient evaluations x seconds of one bare "
            "forward+backward per image on the full chunk); DeepFool's bare pass is one forward "
            "and the batched backward for all classes."
        ),
        "results": rows,
    }
    write_report(args.out, device, report)


if __name__ == "__main__":
    main()
