"""Data conditions: label noise, class imbalance, label-proportion bags and distribution shift applied to a :class:`~losslab.data.base.SplitData`.

Every condition follows one contract::

    fn(data: SplitData, *, generator: torch.Generator, **hyper) -> SplitData

It returns a new ``SplitData`` whose last :class:`~losslab.data.base.ConditionRecord`
says exactly what changed, and all randomness comes from ``generator``.
Train-side conditions never touch the test split; shift conditions
(:mod:`~losslab.data.conditions.shift`, family ``"shift"``) touch only the test
split, so the model trains on the source distribution and is tested on a
shifted one.
"""

from losslab.data.conditions.bags import bag_proportions, make_bags
from losslab.data.conditions.imbalance import long_tail, long_tail_counts
from losslab.data.conditions.late_stopping import first_k_epoch_learning, late_stopping, track_fkl
from losslab.data.conditions.noise import MAPPING_PRESETS, asymmetric_noise, parse_mapping, symmetric_noise
from losslab.data.conditions.pruning import prune_by_score
from losslab.data.conditions.shift import covariate_shift, label_shift, label_shift_counts
from losslab.data.conditions.subsample import subsample

__all__ = [
    "MAPPING_PRESETS",
    "asymmetric_noise",
    "bag_proportions",
    "covariate_shift",
    "label_shift",
    "label_shift_counts",
    "long_tail",
    "long_tail_counts",
    "make_bags",
    "parse_mapping",
    "subsample",
    "symmetric_noise",
]
