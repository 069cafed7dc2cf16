"""Training-set size as a condition: keep a random, class-stratified fraction of the train split.

It is the data axis of a scaling sweep (``losslab scaling fit --store``): every
dataset gains a size knob without a new dataset parameter, so the run ids of
specs that do not use it stay as they were, and the test split is untouched.
"""

from __future__ import annotations

import torch

from losslab.core.registry import real, register
from losslab.core.validation import check_number
from losslab.data.base import ConditionRecord, SplitData
from losslab.data.conditions._common import check_condition_inputs, class_counts, round_half_up


@register("condition", "subsample", family="data_size",
          reference="Training-set size sweeps for data scaling laws: Hoffmann et al., Training "
                    "Compute-Optimal Large Language Models, NeurIPS 2022, arXiv:2203.15556.",
          hyper={"fraction": real(1.0, 0.0, 1.0, low_open=True,
                                  doc="fraction of each class of the train split kept")})
def subsample(data: SplitData, *, generator: torch.Generator, fraction: float = 1.0) -> SplitData:
    r"""Keep a uniformly drawn ``fraction`` of every class of the training split.

    Use it to vary the amount of training data ``D`` in a sweep while the test
    split stays fixed, e.g. for a Chinchilla fit ``L(N, D)``. From each class
    ``c`` with :math:`n_c` training samples,
    :math:`k_c = \max(1, \lfloor \text{fraction}\cdot n_c + 1/2 \rfloor)` are kept,
    drawn without replacement, so the class proportions are preserved;
    ``fraction=1`` keeps everything (and still records it).

    Args:
        data: the split; only its train part ``(N, ...)`` is subset.
        generator: CPU ``torch.Generator``, the only source of randomness.
        fraction: share of each class kept, in ``(0, 1]``.

    Returns:
        A new :class:`SplitData` with ``sum_c k_c`` training samples and a record with
        ``changed={"kept_index": (sum_c k_c,)}`` (sorted, into the previous split) and
        ``summary`` holding ``num_before``, ``num_kept`` and ``counts_after``.

    Raises:
        ValueError: if ``fraction`` is outside ``(0, 1]``, ``data`` has fewer than two
            classes, or ``generator`` is not a CPU generator.

    References:
        Hoffmann et al., *Training Compute-Optimal Large Language Models*, NeurIPS 2022,
        arXiv:2203.15556 (loss as a function of parameters and training data).

    Example:
        >>> data = SplitData("toy", torch.zeros(40, 2), torch.arange(40) % 4,
        ...                  torch.zeros(4, 2), torch.arange(4), num_classes=4)
        >>> half = subsample(data, generator=torch.Generator().manual_seed(0), fraction=0.5)
        >>> half.records[-1].summary["counts_after"], len(half.y_train)
        ([5, 5, 5, 5], 20)
    """
    check_condition_inputs(data, generator)
    fraction = check_number(fraction, "fraction", low=0.0, high=1.0, low_open=True)
    kept = []
    for cls in range(data.num_classes):
        members = (data.y_train_clean == cls).nonzero().squeeze(1)
        if members.numel():
            k = max(1, round_half_up(fraction * members.numel()))
            kept.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    kept_index = torch.cat(kept).sort().values
    summary = {"num_before": int(data.y_train.numel()), "num_kept": int(kept_index.numel()),
               "counts_after": class_counts(data.y_train_clean[kept_index], data.num_classes)}
    record = ConditionRecord("subsample", {"fraction": fraction}, {"kept_index": kept_index}, summary)
    return data.subset_train(kept_index, record)
