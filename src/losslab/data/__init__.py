"""Datasets and the conditions applied to them.

Every dataset builder follows one contract::

    fn(**hyper) -> SplitData

deterministic given its hyper-parameters (random ones take a ``seed``). The
conditions (label noise, imbalance, ...) live in :mod:`losslab.data.conditions`.
Importing this package registers every dataset and condition.
"""

from losslab.data import conditions
from losslab.data.adapters import from_torch_dataset, register_dataset, unregister_dataset
from losslab.data.arrays import from_arrays, load_arrays
from losslab.data.base import ConditionRecord, SplitData
from losslab.data.cifar import make_cifar10, make_cifar100
from losslab.data.digits import make_digits
from losslab.data.idx import make_fashion_mnist, make_mnist
from losslab.data.image_folder import load_image_folder
from losslab.data.mnist1d import make_mnist1d, mnist1d_templates
from losslab.data.modular import make_modular_arithmetic, modular_table
from losslab.data.noisy_labels import make_cifar10n, make_cifar100n, make_noisy_folder, noise_rate
from losslab.data.synthetic import make_gaussian_mixture
from losslab.data.tabular import load_table

__all__ = [
    "ConditionRecord",
    "SplitData",
    "conditions",
    "from_arrays",
    "from_torch_dataset",
    "load_arrays",
    "load_image_folder",
    "load_table",
    "make_cifar10",
    "make_cifar100",
    "make_cifar10n",
    "make_cifar100n",
    "make_fashion_mnist",
    "make_mnist",
    "make_noisy_folder",
    "noise_rate",
    "register_dataset",
    "unregister_dataset",
    "make_digits",
    "make_gaussian_mixture",
    "make_mnist1d",
    "make_modular_arithmetic",
    "mnist1d_templates",
    "modular_table",
]
