"""The `subsample` condition: a class-stratified random fraction of the train split, test split untouched."""

from __future__ import annotations

import pytest
import torch

from losslab.data.base import SplitData
from losslab.data.conditions import subsample
from losslab.data.conditions._common import round_half_up


def _data(n=103, classes=4):
    x = torch.arange(n, dtype=torch.float32)[:, None]
    return SplitData("toy", x, torch.arange(n) % classes, torch.zeros(5, 1), torch.arange(5) % classes,
                     num_classes=classes)


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.5, 1.0])
def test_keeps_the_rounded_fraction_of_every_class(fraction):
    data = _data()
    out = subsample(data, generator=torch.Generator().manual_seed(0), fraction=fraction)
    for c in range(4):
        n_c = int((data.y_train == c).sum())
        assert int((out.y_train == c).sum()) == max(1, round_half_up(fraction * n_c))
    kept = out.records[-1].changed["kept_index"]
    assert torch.equal(out.x_train[:, 0].long(), kept) and torch.equal(out.y_train, data.y_train[kept])
    assert torch.equal(out.x_test, data.x_test) and out.records[-1].summary["num_kept"] == len(kept)
    assert len(set(kept.tolist())) == len(kept)


def test_same_generator_same_subset_and_fraction_one_keeps_all():
    a = subsample(_data(), generator=torch.Generator().manual_seed(3), fraction=0.4)
    b = subsample(_data(), generator=torch.Generator().manual_seed(3), fraction=0.4)
    assert torch.equal(a.x_train, b.x_train)
    assert len(subsample(_data(), generator=torch.Generator().manual_seed(0), fraction=1.0).y_train) == 103


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_bad_fraction_names_itself(fraction):
    with pytest.raises(ValueError, match="fraction"):
        subsample(_data(), generator=torch.Generator(), fraction=fraction)
