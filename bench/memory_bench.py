"""Peak memory of an attack against its chunk size: it should follow the chunk, not N.

Each configuration runs in a fresh process (peak RSS, or CUDA's peak allocation on a GPU)
after the model and the images are loaded, so the number is the attack's own working memory.

    python -m bench.memory_bench --out bench/results/memory.json [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, resource, sys, torch
from robustness import attacks, data, runtime
sys.path.insert(0, {root!r})
from bench.attack_bench import DATA, lenet5
device = runtime.resolve_device({device!r})
model = lenet5(device)
test = data.load_mnist(cache_dir=DATA).test.limit({n}).to(device)
attack = attacks.build({attack!r}, chunk_size={chunk}, **{params!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
attack(model, test.x, test.y)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {{"rss_growth_mib": round((after - before) / 1024, 1)}}
if device.type == "cuda":
    out["cuda_peak_mib"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory.json"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=2000, help="images attacked")
    parser.add_argument("--chunks", default="100,500,2000")
    args = parser.parse_args()

    from bench._machine import write_report
    from robustness import runtime

    try:
        device = runtime.resolve_device(args.device)
    except runtime.DeviceError as exc:
        parser.exit(2, f"error: {exc}\n")
    configs = [("deepfool", {"steps": 50}), ("pgd", {"steps": 20})]
    rows = []
    for attack, params in configs:
        for chunk in (int(c) for c in args.chunks.split(",")):
            code = PROBE.format(
                root=str(ROOT),
                device=str(device),
                n=args.n,
                attack=attack,
                chunk=chunk,
                params=params,
            )
            done = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
            )
            row = {
                "attack": attack,
                "params": params,
                "images": args.n,
                "chunk_size": chunk,
                **json.loads(done.stdout.strip().splitlines()[-1]),
            }
            rows.append(row)
            print(row, flush=True)
    report = {
        "benchmark": "peak memory growth during an attack vs. chunk size (fresh process each)",
        "max_rss_of_this_process_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "results": rows,
    }
    write_report(args.out, device, report)


if __name__ == "__main__":
    main()
