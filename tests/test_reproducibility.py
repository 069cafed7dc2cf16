"""The same spec and seeds give bit-identical stored results across two runs on CPU (issue 8).

Two separate ``losslab run`` processes train the same grid into two stores.
Every stored number is compared with ``==``, not a tolerance: final metrics,
per-epoch history, per-run records and the final weights. The grid covers the
paths with their own randomness: label noise, a robust loss, a regularizer,
mixing (its own draw stream), an optimizer wrapper that evaluates the closure
twice (SAM) and diagnostics. The stored environment is compared too: it is
what explains a difference when two stores do not agree (thread count,
versions, platform).
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import torch

from losslab.engine.store import Store
from specs import TINY, write_spec

SPEC = {
    **TINY,
    "name": "repro",
    "objectives": [
        {"name": "ce"},
        {"label": "gce+cp+mixup", "loss": {"name": "gce", "params": {"q": 0.7}},
         "regularizers": [{"name": "confidence_penalty", "weight": 0.1}],
         "mixing": {"name": "mixup", "params": {"alpha": 0.4}}},
        {"label": "ce+sam", "loss": {"name": "ce"}, "optimizer": {"name": "sam", "params": {"rho": 0.05}}},
    ],
    "conditions": [{"name": "symmetric_noise", "params": {"rate": 0.3}}],
    "diagnostics": [{"name": "neural_collapse", "every": 3}],
}


def _run(spec: Path, db: Path) -> Store:
    proc = subprocess.run([sys.executable, "-m", "losslab.cli", "run", str(spec), "--store", f"sqlite:///{db}",
                           "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Store(f"sqlite:///{db}", create=False)


def _same(a, b) -> bool:
    """Exact equality that treats NaN as equal to NaN (a stored NaN must stay a NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _weights(blob: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)["state"]


def test_same_spec_and_seed_give_bit_identical_stored_results(tmp_path):
    spec = write_spec(tmp_path / "repro.yaml", SPEC)
    first, second = _run(spec, tmp_path / "a.db"), _run(spec, tmp_path / "b.db")
    ids = first.find("")
    assert len(ids) == 3 * 2 and sorted(ids) == sorted(second.find(""))
    for rid in ids:
        a, b = first.run(rid), second.run(rid)
        assert a["status"] == b["status"] == "done", rid
        assert _same(a["final"], b["final"]), f"{rid}: final metrics differ"
        assert _same(a["history"], b["history"]), f"{rid}: per-epoch history differs"
        assert _same(a["records"], b["records"]), f"{rid}: records differ"
        assert a["environment"] == b["environment"], f"{rid}: environment differs"
        wa, wb = _weights(first.checkpoint(rid)), _weights(second.checkpoint(rid))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f"{rid}: weights differ"
    env = first.run(ids[0])["environment"]
    for key in ("torch", "numpy", "python", "platform", "torch_threads", "cpu_count"):
        assert key in env, f"the stored environment lacks {key}"
