"""A validation split carved out of the training split, for tuning without looking at the test set.

Hyper-parameters chosen on the test split overstate how well they generalise.
:func:`validation_split` holds out a class-stratified share of the *training*
samples, with the labels training sees (after any label noise: a practitioner's
validation labels are as noisy as the training ones), and makes it the split
that evaluation reads. The real test split is dropped from the result, so a
tuning trial cannot read it by accident.
"""

from __future__ import annotations

import torch

from losslab.core.validation import check_number, fail
from losslab.data.base import ConditionRecord, SplitData
from losslab.data.conditions._common import check_condition_inputs, class_counts, round_half_up


def validation_split(data: SplitData, *, fraction: float, generator: torch.Generator) -> SplitData:
    r"""Move a class-stratified ``fraction`` of the training split into the evaluation split.

    From each observed class :math:`c` with :math:`n_c` training samples,
    :math:`v_c = \min(n_c - 1, \max(1, \lfloor \text{fraction}\cdot n_c + 1/2 \rfloor))`
    are drawn without replacement for validation (a class with one sample keeps it
    for training). The returned split trains on the rest and evaluates on the
    validation samples, as ``x_test``/``y_test``.

    Args:
        data: the conditioned split ``x_train (N, ...)``; bag (label-proportion) data is refused,
            since its instance labels are not observed.
        fraction: share of each class held out, in ``(0, 1)``.
        generator: CPU ``torch.Generator``, the only source of randomness.

    Returns:
        A :class:`SplitData` with ``N - V`` training and ``V`` evaluation samples, and a record
        ``validation_split`` with ``changed={"val_index": (V,)}`` (into the given train split).

    Raises:
        ValueError: on a ``fraction`` outside ``(0, 1)``, bag data, or too few samples to split.

    Example:
        >>> data = SplitData("toy", torch.arange(40.0)[:, None], torch.arange(40) % 2,
        ...                  torch.zeros(4, 1), torch.arange(4) % 2, num_classes=2)
        >>> val = validation_split(data, fraction=0.25, generator=torch.Generator().manual_seed(0))
        >>> len(val.y_train), len(val.y_test)
        (30, 10)
    """
    check_condition_inputs(data, generator)
    fraction = check_number(fraction, "fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    if data.bags is not None:
        fail("data", "instance-labelled data (a validation split of bags would need their labels)", "bag data")
    held = []
    for cls in range(data.num_classes):
        members = (data.y_train == cls).nonzero().squeeze(1)
        n = members.numel()
        if n >= 2:
            v = min(n - 1, max(1, round_half_up(fraction * n)))
            held.append(members[torch.randperm(n, generator=generator)[:v]])
    if not held:
        fail("data", "at least two training samples of some class to split off a validation set",
             f"{data.y_train.numel()} training samples")
    val_index = torch.cat(held).sort().values
    keep = torch.ones(data.y_train.numel(), dtype=torch.bool)
    keep[val_index] = False
    summary = {"num_train": int(keep.sum()), "num_val": int(val_index.numel()),
               "val_counts": class_counts(data.y_train[val_index], data.num_classes)}
    record = ConditionRecord("validation_split", {"fraction": fraction}, {"val_index": val_index}, summary)
    train_index = keep.nonzero().squeeze(1)
    return data.replace(record, x_train=data.x_train[train_index], y_train=data.y_train[train_index],
                        y_train_clean=data.y_train_clean[train_index],
                        x_test=data.x_train[val_index], y_test=data.y_train[val_index])
