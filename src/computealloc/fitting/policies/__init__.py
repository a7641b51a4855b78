"""Allocation policies: baselines, imitation of the oracle, predict-then-allocate.

Every policy follows scikit-learn conventions: ``fit(X, table)`` on training queries,
``allocate(X, budget)`` for a batch, ``calibrate(X_cal, budget)`` then ``predict(X)`` for a
stream. Routing between models is the same machinery on model-prefixed actions
(``"gpt-4/majority@1"``).
"""

from __future__ import annotations

from computealloc.fitting.policies._base import BasePolicy, mixed_mean
from computealloc.fitting.policies.baselines import LengthHeuristic, Random, Uniform
from computealloc.fitting.policies.imitation import Imitation, oracle_labels
from computealloc.fitting.policies.value import Value

__all__ = [
    "BasePolicy",
    "Imitation",
    "LengthHeuristic",
    "Random",
    "Uniform",
    "Value",
    "mixed_mean",
    "oracle_labels",
]
