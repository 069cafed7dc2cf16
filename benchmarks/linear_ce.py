"""Chunked linear cross-entropy against F.cross_entropy(hidden @ weight.T, target).

Prints JSON: forward+backward wall time of each variant and its ratio to the
naive one, peak memory, and the maximum relative gradient error
(max |g - g_ref| / max |g_ref|) of each variant against the naive gradients.

Variants: ``naive``; ``chunked`` (eager tile math, the CPU default);
``compiled`` (the same tiles through torch.compile: C++ on CPU, Triton on
CUDA; its one-off compile time is reported apart from the step time); and on
CUDA, ``cce`` (the ``cut-cross-entropy`` package) when it is installed.

Memory: the peak during the timed steps over what was held before them (the
inputs, and the gradients' storage is freed between steps): on CPU the
resident-set-size high-water mark (VmHWM, reset after an untimed first call so
compilation's own peak doesn't count), each variant in its own child process;
on CUDA ``torch.cuda.max_memory_allocated``.

    python benchmarks/linear_ce.py                 # quick: N=1024, d=256, V=16384
    python benchmarks/linear_ce.py --full          # N=8192, d=512, V=131072 (~16 GiB for the naive side)
    python benchmarks/linear_ce.py --device cuda --full [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

SIZES = {"quick": (1024, 256, 16384), "full": (8192, 512, 131072)}


def _rss_mb(field: str = "VmRSS") -> float:
    """Current (``VmRSS``) or peak-since-reset (``VmHWM``) resident set size, MiB."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _reset_peak_rss() -> None:
    """Restart the VmHWM high-water mark at the current RSS (Linux >= 4.0), so compile-time peaks don't count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _inputs(n: int, d: int, v: int, device: str, dtype: str):
    import torch

    g = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    h = torch.randn(n, d, generator=g).to(device, dt).requires_grad_(True)
    w = (torch.randn(v, d, generator=g) / d**0.5).to(device, dt).requires_grad_(True)
    t = torch.randint(0, v, (n,), generator=g).to(device)
    return h, w, t


def _step(variant: str, h, w, t):
    import torch.nn.functional as F

    from losslab.losses import linear_cross_entropy

    if variant == "naive":
        loss = F.cross_entropy((h @ w.T).float(), t)
    elif variant == "cce":
        from cut_cross_entropy import linear_cross_entropy as cce

        loss = cce(h, w, t)
    else:
        loss = linear_cross_entropy(h, w, t, validate_args=False, compiled=variant == "compiled")
    loss.backward()
    return loss


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def child(variant: str, size: str, device: str, dtype: str, repeats: int) -> dict:
    import torch

    h, w, t = _inputs(*SIZES[size], device, dtype)
    # One untimed call first: it compiles (or autotunes) where there is something to compile.
    start = time.perf_counter()
    _step(variant, h, w, t)
    _sync(device)
    out: dict = {"first_call_s": time.perf_counter() - start}
    h.grad = w.grad = None
    if device == "cpu":
        _reset_peak_rss()
        base = _rss_mb()
    else:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        h.grad = w.grad = None
        start = time.perf_counter()
        _step(variant, h, w, t)
        _sync(device)
        times.append(time.perf_counter() - start)
    out["time_s"] = min(times)
    out["peak_mb"] = (_rss_mb("VmHWM") - base if device == "cpu"
                      else (torch.cuda.max_memory_allocated() - base) / 2**20)
    return out


def compare(size: str, device: str, dtype: str, variants: list[str]) -> dict:
    h, w, t = _inputs(*SIZES[size], device, dtype)
    _step("naive", h, w, t)
    ref = (h.grad.float().clone(), w.grad.float().clone())
    errors = {}
    for variant in variants:
        h.grad = w.grad = None
        _step(variant, h, w, t)
        errors[variant] = max(float((a.float() - r).abs().max() / r.abs().max()) for a, r in zip((h.grad, w.grad), ref))
    return errors


def _has_cce() -> bool:
    return importlib.util.find_spec("cut_cross_entropy") is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--no-compiled", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--child", choices=["naive", "chunked", "compiled", "cce", "compare"])
    args = ap.parse_args()
    size = "full" if args.full else "quick"
    variants = ["chunked"] + ([] if args.no_compiled else ["compiled"])
    if args.device == "cuda" and _has_cce():
        variants.append("cce")
    if args.child:
        if args.child == "compare":
            out = compare(size, args.device, args.dtype, variants)
        else:
            out = child(args.child, size, args.device, args.dtype, args.repeats)
        print(json.dumps(out))
        return
    common = ["--repeats", str(args.repeats), "--device", args.device, "--dtype", args.dtype]
    common += (["--full"] if args.full else []) + (["--no-compiled"] if args.no_compiled else [])
    runs = {}
    for variant in ["naive", *variants, "compare"]:
        cmd = [sys.executable, __file__, "--child", variant, *common]
        runs[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    n, d, v = SIZES[size]
    import torch

    naive = runs["naive"]
    print(json.dumps({
        "size": {"N": n, "d": d, "V": v, "dtype": args.dtype},
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        **{name: runs[name] for name in ["naive", *variants]},
        "time_ratio_over_naive": {name: runs[name]["time_s"] / naive["time_s"] for name in variants},
        "memory_ratio_over_naive": {name: runs[name]["peak_mb"] / naive["peak_mb"] for name in variants},
        "memory_measure": ("peak RSS growth over the inputs (VmHWM reset after a first untimed call), one process per variant"
                           if args.device == "cpu" else "torch.cuda.max_memory_allocated over the inputs"),
        "max_rel_grad_error": runs["compare"],
        "cut_cross_entropy": "cce" in variants or "not installed",
    }, indent=2))


if __name__ == "__main__":
    main()
