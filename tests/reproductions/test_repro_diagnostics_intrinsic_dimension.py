"""[317] Intrinsic dimension: a few hundred random directions suffice, however wide the network.

Claim (Li et al., ICLR 2018): training only ``z`` in ``theta = theta0 + P z``, a
random ``d``-dimensional subspace, reaches 90% of full training's performance
at a ``d_int90`` far below the parameter count, and ``d_int90`` varies little
across a family of networks of very different sizes: extra parameters enlarge
the solution manifold instead of the problem's difficulty.

Setting: sklearn digits (split seed = run seed), 64-w-10 ReLU MLPs,
``intrinsic_dimension`` with dense projections and ``classifier_train_fn``
(Adam lr 1e-2, batch 128, 30 epochs, test accuracy), threshold 0.9.

Measured (test accuracy at d = 100 / 200 / 300 / 400 / 600; baseline 0.97-0.98,
so the bar is about 0.876):

- seed 0: w 64 (4810 params)   0.79 0.86 0.93 0.94 0.95 -> d_int90 300
          w 128 (9610 params)  0.64 0.87 0.90 0.94 0.95 -> 300
          w 256 (19210 params) 0.66 0.85 0.91 0.93 0.96 -> 300
- seed 1: w 64 300, w 128 200, w 256 300;  seed 2: w 64 300, w 128 300, w 256 300;
  seeds 3, 4: w 64 200, w 128 300 (at d = 100 at most 0.79 anywhere)

So d_int90 is 200-300 for 4.8k-19.2k parameters (16-96x fewer), and it does
not grow with width (ratios 0.67-1.5 between widths of one seed). The sweep
resolves d_int90 only to the grid, and seed 2's width-256 run clears the bar
at d = 300 by 0.002, so the tests allow a factor 2 between widths.

Runtime: the fast test (one seed, widths 64 and 128) about 5 s of one CPU
thread; the slow one (three seeds, widths 64 and 256, up to d = 600) about 40 s.
"""

from __future__ import annotations

import pytest

from losslab.core.seeding import seeded
from losslab.data import make_digits
from losslab.diagnostics import intrinsic_dimension
from losslab.diagnostics.intrinsic import IntrinsicDimensionResult, classifier_train_fn
from losslab.models import build_mlp

SEEDS = (0, 1, 2)


def _d_int90(seed: int, width: int, dims: tuple[int, ...]) -> IntrinsicDimensionResult:
    data = make_digits(split_seed=seed)
    fit = classifier_train_fn(data.x_train, data.y_train, data.x_test, data.y_test, epochs=30, lr=1e-2, seed=seed)

    def build():
        with seeded(seed):
            return build_mlp((64,), 10, width=width, depth=1)

    result = intrinsic_dimension(build, fit, dims, threshold=0.9, seed=seed)
    print(f"seed {seed} width {width}: {result.num_params} params, baseline {result.baseline:.3f}, "
          f"d_int90 {result.dim}, performance { {d: round(v, 3) for d, v in result.performance.items()} }")
    return result


def _check(small: IntrinsicDimensionResult, large: IntrinsicDimensionResult) -> None:
    for r in (small, large):
        assert r.dim is not None and r.dim > 100  # not trivial: 100 directions are too few ...
        assert r.num_params >= 10 * r.dim  # ... but far fewer than the parameters suffice
    assert 0.5 <= large.dim / small.dim <= 2.0  # and the number barely moves with the width
    assert large.num_params >= 1.9 * small.num_params


def test_intrinsic_dimension_is_hundreds_and_about_constant_when_the_width_doubles():
    dims = (100, 200, 300, 400)
    _check(_d_int90(0, 64, dims), _d_int90(0, 128, dims))


@pytest.mark.slow
def test_intrinsic_dimension_does_not_grow_with_a_fourfold_wider_network():
    dims = (100, 200, 300, 400, 600)
    for seed in SEEDS:
        small, large = _d_int90(seed, 64, dims), _d_int90(seed, 256, dims)
        _check(small, large)
        assert large.num_params >= 3.9 * small.num_params
