"""The validation split used by tuning: stratified, disjoint, seeded, and the test split is gone."""

from __future__ import annotations

import pytest
import torch

from losslab.data.base import SplitData
from losslab.data.splits import validation_split


def _data(n=100, classes=4):
    x = torch.arange(n, dtype=torch.float32)[:, None]
    y = torch.arange(n) % classes
    return SplitData("toy", x, y, torch.full((7, 1), -1.0), torch.zeros(7, dtype=torch.long), num_classes=classes,
                     y_train_clean=(y + 1) % classes)


def test_stratified_disjoint_and_covering():
    data = _data()
    out = validation_split(data, fraction=0.2, generator=torch.Generator().manual_seed(3))
    train_ids, val_ids = out.x_train[:, 0].long(), out.x_test[:, 0].long()
    assert len(set(train_ids.tolist()) & set(val_ids.tolist())) == 0
    assert sorted(train_ids.tolist() + val_ids.tolist()) == list(range(100))
    assert torch.bincount(out.y_test, minlength=4).tolist() == [5, 5, 5, 5]  # 20% of 25 per class
    # the validation labels are the ones training sees (noisy), the clean ones follow the train samples
    assert torch.equal(out.y_test, data.y_train[val_ids]) and torch.equal(out.y_train_clean, data.y_train_clean[train_ids])
    assert not (out.x_test == -1).any()  # the real test split is not in the result
    assert out.records[-1].summary == {"num_train": 80, "num_val": 20, "val_counts": [5, 5, 5, 5]}


def test_seeded_and_keeps_a_training_sample_per_class():
    a = validation_split(_data(), fraction=0.3, generator=torch.Generator().manual_seed(1))
    b = validation_split(_data(), fraction=0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.x_test, b.x_test)
    tiny = validation_split(_data(n=8), fraction=0.99, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(tiny.y_train, minlength=4).tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, float("nan")])
def test_fraction_must_be_inside_the_unit_interval(fraction):
    with pytest.raises(ValueError, match="`fraction`"):
        validation_split(_data(), fraction=fraction, generator=torch.Generator())


def test_bag_data_is_refused():
    data = _data()
    bagged = SplitData("toy", data.x_train, data.y_train, data.x_test, data.y_test, 4, bags=torch.arange(100) // 10)
    with pytest.raises(ValueError, match="`data`"):
        validation_split(bagged, fraction=0.2, generator=torch.Generator())
