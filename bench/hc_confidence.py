"""Why the high-confidence attack's ρ is 2× DeepFool's here and 1.32× in the thesis (issue 16).

The thesis (Table 4.1, plain LeNet-5) reports ρ 0.157 for DeepFool and 0.207 for its
high-confidence attack, whose target confidence C is the model's clean confidence (§4.5).
This measures, on one plain LeNet-5 and the first ``--images`` test images: the clean
confidence distribution, DeepFool's ρ (500 steps, clip 0.1), and the attack's ρ at fixed C
and at C = the clean confidence, overall and per clean-confidence bin.

    python -m bench.hc_confidence --out bench/results/hc_confidence.json [--model PATH]

Without ``--model`` it trains the model it measures (LeNet-5, chapter 3 schedule, 5 epochs on
the 50,000 training images, seed 0: about 0.8% test error) into var/bench/ and reuses it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench._machine import write_report
from robustness import attacks, data, evaluation, load_model
from robustness.training import TrainConfig, fit

THESIS = {"deepfool": 0.157, "hc": 0.207}  # Table 4.1, LeNet-5 without defense
FIXED = (0.5, 0.8, 0.9, 0.97, 0.99)
BINS = ((0.0, 0.99), (0.99, 0.9999), (0.9999, 0.999999), (0.999999, 1.0))


def trained(path: Path, mnist: data.Dataset) -> torch.nn.Module:
    if not path.exists():
        config = TrainConfig.from_schedule("ch3", arch="lenet5", epochs=5, seed=0)
        fit(config, mnist, device="cpu", checkpoint_path=path)
    return load_model(path, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/hc_confidence.json"))
    parser.add_argument("--model", type=Path, default=Path("var/bench/lenet5-ch3-e5.pt"))
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = data.load("mnist")
    model = trained(args.model, mnist).eval()
    x, y = mnist.test.x[: args.images], mnist.test.y[: args.images]
    with torch.no_grad():
        probs = model(x).softmax(1)
    conf = probs.max(1).values
    correct = probs.argmax(1) == y

    def rho(attack: attacks.Attack) -> tuple[dict, torch.Tensor, torch.Tensor]:
        result = evaluation.run_attack(attack, model, x, y).result
        summary = evaluation.average_robustness(x, result, correct)
        ratio = (result.x_adv - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
        return summary, ratio, correct & result.success

    deepfool, _, _ = rho(attacks.build("deepfool", steps=500, clip=0.1))
    rows = []
    for c in (*FIXED, "original"):
        summary, ratio, ok = rho(attacks.build("hc", confidence=c))
        row = {
            "confidence": c,
            "rho": round(summary["rho"], 4),
            "over_deepfool": round(summary["rho"] / deepfool["rho"], 3),
            "success_rate": round(summary["success_rate"], 4),
        }
        if c == "original":
            row["by_clean_confidence"] = [
                {
                    "from": lo,
                    "to": hi,
                    "images": int(((conf >= lo) & (conf < hi) & ok).sum()),
                    "rho": round(ratio[(conf >= lo) & (conf < hi) & ok].mean().item(), 4),
                }
                for lo, hi in (*BINS, (1.0, 2.0))
            ]
        rows.append(row)
        print(f"C={c}: rho {row['rho']} ({row['over_deepfool']}x DeepFool)")
    report = {
        "benchmark": "high-confidence attack: rho against its target confidence C",
        "command": f"python -m bench.hc_confidence --out {args.out}",
        "model": str(args.model),
        "images": args.images,
        "test_error": round(1 - correct.float().mean().item(), 4),
        "clean_confidence": {
            "mean": round(conf.mean().item(), 5),
            "median": round(conf.median().item(), 7),
            "share_rounding_to_1": round((conf == 1.0).float().mean().item(), 4),
        },
        "deepfool_rho": round(deepfool["rho"], 4),
        "thesis": {**THESIS, "hc_over_deepfool": round(THESIS["hc"] / THESIS["deepfool"], 3)},
        "hc": rows,
    }
    write_report(args.out, torch.device("cpu"), report)


if __name__ == "__main__":
    main()
