"""Hyper-parameter tuning of spec objectives with Optuna, searched within the registry's ranges.

Optuna is an optional dependency (``pip install 'losslab[tune]'``); importing
this package does not import it.
"""

from losslab.tune.space import Dim, apply, search_space, select
from losslab.tune.study import TuneResult, metric_direction, tune

__all__ = ["Dim", "TuneResult", "apply", "metric_direction", "search_space", "select", "tune"]
