"""The adversary critic's training cost against the floor its method implies (methods.md §5).

One classifier step of the critic defense (after pre-training) needs, per batch of B images:

- F, forward passes of the classifier: the clean pass (which also serves the closest target's
  gradients and the attack's first step), 4 more attack iterates, the pass at x̂ (the
  prediction the critic needs, also the cycle attack's first step) and its 4 more iterates: 10;
- B_in, first-order input gradients: k − 1 = 9 for the closest target (w_j = ∇z_j − ∇z_y);
- B_cg, input gradients with create_graph (one per unrolled attack step, both attacks): 10;
- DB, backward through one unrolled step (its gradient graph and its forward): 10;
- B_p, the plain backward of the clean pass to the parameters, and one Adam step;
- one critic update (its forward on 2B inputs, gradient penalty, double backward, Adam) and the
  critic term (critic forward at x̂ and its input gradient).

Each kind of pass is timed on its own on this machine; their sum weighted by the counts is the
ideal step, and ideal / plain step is the ideal ratio. The defense's actual step is timed on
the same batches, and so is the earlier implementation (separate clean, closest-target, attack
and prediction passes) as the baseline of the same run, the three interleaved batch by batch.

    python -m bench.critic_cost --out bench/results/critic_cost.json [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from bench._machine import write_report
from robustness import data, defenses, nets
from robustness.attacks.high_confidence import _log_target, closest_target, hc_differentiable
from robustness.defenses.critic import AdversaryCritic

NETWORKS = ("mlp1200", "lenet5")
STEPS = 5  # §4.5: iterations of the training attack


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def units(arch: str, defense: AdversaryCritic, x: torch.Tensor, y: torch.Tensor, repeats: int):
    """Seconds of one pass of each kind at batch len(x)."""
    model = nets.build(arch, in_shape=(1, 28, 28)).train()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=5e-4, betas=(0.5, 0.999))
    leaf = x.detach().requires_grad_(True)
    target = (y + 1) % 10
    seed = F.one_hot(target, 10).float() - F.one_hot(y, 10).float()
    v = torch.randn_like(x)

    def forward() -> object:
        return model(leaf)

    logits = model(leaf)

    def b_in() -> object:
        return torch.autograd.grad(logits, leaf, grad_outputs=seed, retain_graph=True)

    def b_cg() -> object:
        ell = _log_target(model(leaf), target)
        return torch.autograd.grad(ell.sum(), leaf, create_graph=True)

    def double_backward() -> None:
        ell = _log_target(model(leaf), target)
        (g,) = torch.autograd.grad(ell.sum(), leaf, create_graph=True)
        ((g * v).sum() + ell.sum()).backward(inputs=params)

    def b_p() -> None:
        F.cross_entropy(model(x), y).backward(inputs=params)

    def adam() -> None:
        opt.step()

    x_adv = (x + 0.1 * v).clamp(0, 1)
    adv_pred = target
    assert defense.critic is not None
    critic = defense.critic
    frozen = {k: p.detach() for k, p in critic.named_parameters()}

    def critic_update() -> object:
        return defense.critic_step(x, y, x_adv, adv_pred)

    def critic_term() -> object:
        point = x_adv.detach().requires_grad_(True)
        logit = functional_call(critic, frozen, (point,)).gather(1, adv_pred[:, None])
        return torch.autograd.grad(F.softplus(-logit).sum(), point)

    f = timed(forward, repeats)
    b_p_total = timed(b_p, repeats)
    cg_total = timed(b_cg, repeats)
    db_total = timed(double_backward, repeats)
    return {
        "F": f,
        "B_in": timed(b_in, repeats),
        "B_cg": cg_total - f,
        "DB": db_total - cg_total,
        "B_p": b_p_total - f,
        "adam": timed(adam, repeats),
        "critic_update": timed(critic_update, repeats),
        "critic_term": timed(critic_term, repeats),
    }


COUNTS = {
    "F": 2 * STEPS,
    "B_in": 9,
    "B_cg": 2 * STEPS,
    "DB": 2 * STEPS,
    "B_p": 1,
    "adam": 1,
    "critic_update": 1,
    "critic_term": 1,
}


def earlier_loss(defense: AdversaryCritic, model: torch.nn.Module, x, y) -> torch.Tensor:
    """The implementation before this benchmark (baseline): every pass recomputed."""
    p = defense.params
    logits = model(x)
    defense.update_confidence(logits)
    ce = F.cross_entropy(logits, y)
    clean_conf, pred = logits.softmax(1).max(1)
    target = closest_target(model, x, pred)
    confidence = defense.running_confidence()[target]
    x_adv = hc_differentiable(model, x, target, confidence, steps=STEPS, overshoot=p.overshoot)
    with torch.no_grad():
        adv_pred = model(x_adv.detach()).argmax(1)
    defense.critic_step(x, y, x_adv.detach(), adv_pred)
    adv, rec = defense.adversarial_terms(model, x, x_adv, adv_pred, pred, clean_conf)
    assert defense.weight is not None
    return ce + defense.weight * adv + p.rec_weight * rec


def step_seconds(arch: str, x_all, y_all, batch: int) -> dict[str, float]:
    """Median seconds per classifier step of plain training, the critic defense and its
    earlier version, interleaved batch by batch (rotating order) so drift hits all alike."""
    modes = ("plain", "critic", "earlier")
    runs = {}
    for mode in modes:
        torch.manual_seed(0)
        model = nets.build(arch, in_shape=(1, 28, 28)).train()
        params = list(model.parameters())
        opt = torch.optim.Adam(params, lr=5e-4, betas=(0.5, 0.999))
        defense = defenses.build("critic", {"pretrain_epochs": 1})
        assert isinstance(defense, AdversaryCritic)
        defense.setup(model, device=torch.device("cpu"), epochs=5)
        defense.begin_epoch(1)
        for xb, yb in zip(
            x_all[: 3 * batch].split(batch), y_all[: 3 * batch].split(batch), strict=True
        ):
            defense.loss(model, xb, yb)  # pre-training initialises the running confidences
        defense.begin_epoch(2)
        runs[mode] = (model, params, opt, defense)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    batches = list(
        zip(x_all[3 * batch :].split(batch), y_all[3 * batch :].split(batch), strict=True)
    )
    for i, (xb, yb) in enumerate(batches):
        for mode in modes[i % 3 :] + modes[: i % 3]:
            model, params, opt, defense = runs[mode]
            start = time.perf_counter()
            if mode == "plain":
                loss = F.cross_entropy(model(xb), yb)
            elif mode == "critic":
                loss = defense.loss(model, xb, yb).loss
            else:
                loss = earlier_loss(defense, model, xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            opt.step()
            if i >= 3:  # the first steps warm up
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) for mode, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/critic_cost.json"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--repeats", type=int, default=10, help="timings per pass kind")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = data.load("mnist")
    n = args.batch * (args.steps + 6)
    x_all, y_all = mnist.train.x[:n], mnist.train.y[:n]
    results = []
    for arch in NETWORKS:
        torch.manual_seed(0)
        model = nets.build(arch, in_shape=(1, 28, 28)).train()
        defense = defenses.build("critic", {"pretrain_epochs": 1})
        assert isinstance(defense, AdversaryCritic)
        defense.setup(model, device=torch.device("cpu"), epochs=5)
        x, y = x_all[: args.batch], y_all[: args.batch]
        unit = units(arch, defense, x, y, args.repeats)
        seconds = step_seconds(arch, x_all, y_all, args.batch)
        plain, actual, earlier = seconds["plain"], seconds["critic"], seconds["earlier"]
        ideal = sum(COUNTS[k] * unit[k] for k in COUNTS)
        row = {
            "network": arch,
            "batch": args.batch,
            "pass_seconds": {k: round(v, 5) for k, v in unit.items()},
            "pass_counts": COUNTS,
            "plain_step_seconds": round(plain, 5),
            "critic_step_seconds": round(actual, 5),
            "earlier_critic_step_seconds": round(earlier, 5),
            "ideal_step_seconds": round(ideal, 5),
            "measured_ratio": round(actual / plain, 2),
            "earlier_ratio": round(earlier / plain, 2),
            "ideal_ratio": round(ideal / plain, 2),
            "actual_over_ideal": round(actual / ideal, 3),
        }
        results.append(row)
        print(
            f"{arch}: plain {1000 * plain:.1f} ms/step, critic {1000 * actual:.1f} "
            f"({row['measured_ratio']}x; earlier {row['earlier_ratio']}x), ideal "
            f"{row['ideal_ratio']}x, actual/ideal {row['actual_over_ideal']}"
        )
    write_report(
        args.out,
        torch.device("cpu"),
        {
            "benchmark": "adversary critic: cost per classifier step vs the passes its method "
            "needs (training proper, after pre-training)",
            "command": f"python -m bench.critic_cost --out {args.out} --threads {args.threads}",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
