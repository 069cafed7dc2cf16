"""Training throughput of the CIFAR image models: images per second of one SGD step.

Prints JSON: for ``preact_resnet18`` (11,171,146 parameters for 10 classes) and
``wide_resnet`` (WRN-16-4, 2,748,890), and ``cnn2d`` for scale, on a synthetic batch of
32x32 RGB images, the best-of-``--repeats`` wall time of one training step
(forward, cross-entropy, backward, SGD with momentum) and the images/second it
gives, after ``--warmup`` steps (allocator, cuDNN algorithm choice); on CUDA the
clock is read after ``torch.cuda.synchronize``. The best time, not the mean:
other processes only ever add time.

    python benchmarks/image_models.py                         # batch 128, CPU, well under a minute
    python benchmarks/image_models.py --device cuda --repeats 20
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from losslab.core.seeding import seeded
from losslab.models.cnn2d import build_cnn2d
from losslab.models.resnet import build_preact_resnet18
from losslab.models.wide_resnet import build_wide_resnet

MODELS = {
    "preact_resnet18": lambda: build_preact_resnet18((3, 32, 32), 10),
    "wide_resnet_16_4": lambda: build_wide_resnet((3, 32, 32), 10, depth=16, widen_factor=4),
    "cnn2d": lambda: build_cnn2d((3, 32, 32), 10),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, batch: int, warmup: int, repeats: int, device: torch.device) -> dict:
    with seeded(0):
        model = MODELS[name]().to(device).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return {"params": sum(p.numel() for p in model.parameters()), "step_seconds": best,
            "images_per_second": batch / best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    args = parser.parse_args()
    if args.batch < 2 or args.warmup < 0 or args.repeats < 1:
        parser.error("need --batch >= 2 (batch norm), --warmup >= 0 and --repeats >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels in warm-up
    results = {name: measure(name, args.batch, args.warmup, args.repeats, device) for name in args.models}
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "batch": args.batch, "torch": torch.__version__}
    print(json.dumps({**info, "models": results}, indent=2))


if __name__ == "__main__":
    main()
