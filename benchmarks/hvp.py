"""Cost of one Hessian-vector product relative to one gradient, for the sharpness diagnostics.

Prints JSON: for the MNIST-1D MLP (15,210 parameters) and CNN (5,210), on one
batch, the best-of-``repeats`` wall time of a gradient (forward + backward of the mean
cross-entropy, ``torch.autograd.grad``) and of one power-iteration step as the
diagnostics compute it (the second backward seeded with ``v`` through the
gradient graph the operator keeps), and their ratio; ``first_ratio`` is the
first product, which also builds that graph (forward, backward with
``create_graph``) and is paid once per solve. The two are timed interleaved, best of
``--repeats``, so a busy host disturbs both alike. The goal is a ratio of at most 3.

    python benchmarks/hvp.py                       # batch 512, CPU
    python benchmarks/hvp.py --batch 2048 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from losslab.diagnostics.sharpness import _operator
from losslab.models import build_mlp, build_mnist1d_cnn


def _best_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Best-of-``repeats`` seconds per function, interleaved so that both see the same host load."""
    for fn in fns.values():  # warm-up: allocator, autograd graph caches, cuDNN algorithm choice
        for _ in range(3):
            fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for key, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            # the least-disturbed run: other processes only ever add time
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def measure(name: str, model: torch.nn.Module, batch: int, repeats: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 40, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    model = model.to(device).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    op = _operator(model, x, y, None, batch)  # one chunk: the whole batch, like the gradient
    v = torch.randn(op.dim, generator=g).to(device)

    def gradient() -> object:
        return torch.autograd.grad(F.cross_entropy(model(x), y), params)

    def first_product() -> object:
        return _operator(model, x, y, None, batch)(v)

    best = _best_times({"grad": gradient, "hvp": lambda: op(v), "first": first_product}, repeats, device)
    grad_s, hvp_s = best["grad"], best["hvp"]
    return {"model": name, "params": op.dim, "batch": batch, "grad_ms": 1e3 * grad_s, "hvp_ms": 1e3 * hvp_s,
            "ratio": hvp_s / grad_s, "first_ratio": best["first"] / grad_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 keeps timings stable on a busy host)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    models = {"mlp": build_mlp((40,), 10), "mnist1d_cnn": build_mnist1d_cnn((40,), 10)}
    rows = [measure(name, m, args.batch, args.repeats, device) for name, m in models.items()]
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "goal_ratio": 3.0,
                      "results": rows}, indent=2))


if __name__ == "__main__":
    main()
