"""The compiled tile kernels (torch.compile) give the eager chunked loss's values and gradients.

On CPU torch.compile generates C++ (needs a compiler, seconds per shape family), the
same Inductor lowering that emits Triton on CUDA, so these run here, marked slow.
"""

from __future__ import annotations

import pytest
import torch

from losslab.losses import LinearCrossEntropyLoss, linear_cross_entropy
from losslab.losses.linear_ce_tiles import can_compile

from .test_linear_ce import _grads, _naive, _problem


def test_auto_choice_stays_eager_off_cuda_and_bad_flag_is_refused():
    assert not can_compile(torch.device("cpu"))
    h, w, b, t = _problem(bias=False)
    with pytest.raises(ValueError, match="`compiled`.*True, False or None"):
        linear_cross_entropy(h, w, t, compiled="yes")
    with pytest.raises(ValueError, match="`compiled`"):
        LinearCrossEntropyLoss(compiled=1)


# "mean" (the training path, gradients formed in the forward pass) runs by default; the
# recompute path ("none") compiles two more kernels, so it waits for the slow run.
@pytest.mark.parametrize("reduction", ["mean", pytest.param("none", marks=pytest.mark.slow)])
def test_compiled_kernels_match_eager_and_naive(reduction):
    kw = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 4.0}
    h, w, b, t = _problem(n=64, d=16, v=300, dtype=torch.float32)
    # chunk 128 leaves a ragged last chunk, so a second shape is compiled too
    eager = linear_cross_entropy(h, w, t, bias=b, chunk_size=128, reduction=reduction, compiled=False, **kw)
    fused = linear_cross_entropy(h, w, t, bias=b, chunk_size=128, reduction=reduction, compiled=True, **kw)
    ref = _naive(h.double(), w.double(), b.double(), t, reduction=reduction, **kw)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused.double(), ref, rtol=1e-5, atol=1e-6)
    up = torch.linspace(0.5, 1.5, len(t)) if reduction == "none" else torch.tensor(1.0)
    for a, e in zip(_grads((fused * up).sum(), h, w, b), _grads((eager * up).sum(), h, w, b)):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)
