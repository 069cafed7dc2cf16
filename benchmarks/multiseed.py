"""K seeds of the MNIST-1D MLP (40-100-100-10, Adam, batch 100): sequential runs vs one vectorized pack.

Times 1000 training steps (no evaluation) of

- ``sequential``: each of the K runs on the engine's own step path (the
  ``Objective``, ``ObjectiveClosure`` and ``torch.optim.Adam`` that
  :func:`losslab.engine.train.train_run` steps), one after another;
- ``vectorized``: the K runs as one pack (:class:`losslab.engine.vmap.PackTrainer`);
- ``hand_batched``: the same step written directly on stacked tensors
  (``torch.baddbmm`` forward, summed per-member cross-entropy, autograd backward,
  ``torch.optim.Adam`` on the stacked tensors): the compute-bound reference.

Prints JSON with the medians over ``--repeats`` (seconds per 1000 steps of all
K runs, and per member), the throughput ratio vectorized/sequential and the
ratio vectorized/hand-batched (1.0 = no overhead over the reference), both as
ratios of the medians and as medians of the per-repeat ratios. Torch
threads are left as ``losslab run`` leaves them in-process (the default),
unless ``--threads`` is given.

    python benchmarks/multiseed.py [--k 16] [--steps 1000] [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from losslab.core.seeding import derive_seed, make_generator
from losslab.engine.objective import Objective, ObjectiveClosure, make_optimizer
from losslab.engine.packing import plan_packs
from losslab.engine.plan import RunSpec, make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.train import InstanceBatches, LRSchedule, build_data, build_model
from losslab.engine.vmap import PackTrainer


def grid(k: int, device: str) -> list[RunSpec]:
    return make_plan(parse_spec({
        "name": "multiseed", "datasets": [{"name": "mnist1d"}], "model": {"name": "mlp"},
        "objectives": [{"name": "ce"}], "seeds": k,
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 100, "device": device}}))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def sequential(run: RunSpec, steps: int, warmup: int) -> float:
    """Seconds for ``steps`` steps of one run on the engine's step path (as in ``train._train``)."""
    config, train = run.config, run.config["train"]
    device = torch.device(train["device"])
    data = build_data(config)
    model = build_model(config, data).to(device)
    objective = Objective(config["objective"], data, model, device, [], None, config["seed"])
    params = list(model.parameters()) + objective.parameters()
    optimizer = make_optimizer(params, train, None)
    x = data.x_train.to(device)
    batches = InstanceBatches(data, train["batch_size"], device)
    order = make_generator(derive_seed(config["seed"], "batches"))
    schedule = LRSchedule(optimizer, train, steps_per_epoch=len(batches))
    step, total, start = 0, torch.zeros((), device=device), 0.0
    while step < warmup + steps:
        for idx, targets in batches(order):
            if step == warmup:
                sync(train["device"])
                start = time.perf_counter()
            if step == warmup + steps:
                break
            schedule.at(step)
            step += 1
            closure = ObjectiveClosure(objective, model, x[idx], targets, idx, params, epoch=1, epochs=1, step=step)
            total += optimizer.step(closure).detach() * len(idx)
    float(total)
    sync(train["device"])
    return time.perf_counter() - start


def vectorized(runs: list[RunSpec], steps: int, warmup: int) -> float:
    (pack,) = plan_packs(runs).packs
    trainer = PackTrainer(pack)
    per_epoch, epoch, start = trainer.steps_per_epoch, 0, 0.0
    assert warmup % per_epoch == 0 and steps % per_epoch == 0, "whole epochs keep the timing loop plain"
    while epoch * per_epoch < warmup + steps:
        if epoch * per_epoch == warmup:
            sync(trainer.train["device"])
            start = time.perf_counter()
        trainer.train_epoch(epoch * per_epoch)  # ends in a host read of the epoch losses, like the engine's
        epoch += 1
    sync(trainer.train["device"])
    return time.perf_counter() - start


def hand_batched(runs: list[RunSpec], steps: int, warmup: int) -> float:
    """The same step on stacked tensors, written by hand: the compute-bound reference."""
    device = runs[0].config["train"]["device"]
    datas = [build_data(r.config) for r in runs]
    models = [build_model(r.config, d) for r, d in zip(runs, datas)]
    params = [torch.stack([p.detach() for p in ps]).to(device).requires_grad_()
              for ps in zip(*(m.parameters() for m in models))]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    x, y = datas[0].x_train.to(device), torch.stack([d.y_train for d in datas]).to(device)
    k, n, batch = len(runs), len(y[0]), 100
    gen = torch.Generator().manual_seed(0)
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        if step % (n // batch) == 0:
            perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(k)]).to(device)
        idx = perm[:, (step % (n // batch)) * batch:][:, :batch]
        h = x[idx]
        for i in range(0, len(params) - 2, 2):
            h = torch.relu(torch.baddbmm(params[i + 1].unsqueeze(1), h, params[i].transpose(1, 2)))
        logits = torch.baddbmm(params[-1].unsqueeze(1), h, params[-2].transpose(1, 2))
        loss = F.cross_entropy(logits.flatten(0, 1), y.gather(1, idx).flatten(), reduction="sum") / batch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=16, help="seeds (pack size)")
    ap.add_argument("--steps", type=int, default=1000, help="timed steps (a multiple of 40, the steps per epoch)")
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seq-runs", type=int, default=None, help="sequential runs timed (default k; scaled to k)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as losslab run)")
    args = ap.parse_args()
    if args.k < 2 or args.steps < 40 or args.steps % 40 or args.warmup % 40 or args.repeats < 1:
        ap.error("--k must be >= 2, --steps and --warmup multiples of 40, --repeats >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runs = grid(args.k, args.device)
    seq_runs = min(args.seq_runs or args.k, args.k)
    times: dict[str, list[float]] = {"sequential": [], "vectorized": [], "hand_batched": []}
    for _ in range(args.repeats):  # interleaved, so a load change on the host hits all three alike
        per_run = [sequential(r, args.steps, args.warmup) for r in runs[:seq_runs]]
        times["sequential"].append(sum(per_run) * args.k / seq_runs)
        times["vectorized"].append(vectorized(runs, args.steps, args.warmup))
        times["hand_batched"].append(hand_batched(runs, args.steps, args.warmup))
    scale = 1000 / args.steps
    med = {k: statistics.median(v) * scale for k, v in times.items()}
    print(json.dumps({
        "k": args.k, "device": args.device, "threads": torch.get_num_threads(), "steps_timed": args.steps,
        "repeats": args.repeats,
        "seconds_per_1000_steps": med,
        "seconds_per_1000_steps_per_member": {k: v / args.k for k, v in med.items()},
        "all_repeats": {k: [t * scale for t in v] for k, v in times.items()},
        # Ratios within each repeat (the three timed back to back) resist a host whose load drifts.
        "median_per_repeat_ratios": {
            "throughput_vs_sequential": statistics.median(
                s / v for s, v in zip(times["sequential"], times["vectorized"])),
            "vectorized_vs_hand_batched": statistics.median(
                h / v for h, v in zip(times["hand_batched"], times["vectorized"]))},
        "throughput_vs_sequential": med["sequential"] / med["vectorized"],
        "vectorized_vs_hand_batched": med["hand_batched"] / med["vectorized"],
        "hand_batched_vs_sequential": med["sequential"] / med["hand_batched"],
        "goals": {"throughput_vs_sequential": 3.5, "vectorized_vs_hand_batched": 0.9},
    }, indent=2))


if __name__ == "__main__":
    main()
