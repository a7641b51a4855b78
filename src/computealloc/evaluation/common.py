"""Names and constants the evaluation modules share: method groups, protocols, metrics.

:data:`METHODS`, :data:`SEQUENTIAL`, :data:`THINKING` and :data:`PROTOCOLS` are re-exported by
:mod:`computealloc.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from computealloc.evaluation.thinking import THINKING_METHODS
from computealloc.fitting.sequential import SEQUENTIAL_METHODS
from computealloc.methods import evaluated

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Protocol = Literal["in-sample", "held-out"]
ProgressCallback = Callable[[int, int], None]

PROTOCOLS: tuple[str, ...] = ("in-sample", "held-out")

#: The sequential methods of :func:`computealloc.fitting.sequential.sequential_methods` that
#: :func:`evaluate` runs (its ``uniform-majority`` is ``uniform`` here).
SEQUENTIAL: tuple[str, ...] = tuple(m for m in SEQUENTIAL_METHODS if m in evaluated())

#: Replayed orders per query of the sequential methods.
SEQUENTIAL_ORDERS = 64

#: The early-exit rules along the thought (:mod:`computealloc.evaluation.thinking`), run on
#: checkpoint logs.
THINKING: tuple[str, ...] = tuple(THINKING_METHODS)

#: Every method, in report order (:data:`computealloc.methods.REGISTRY`'s evaluated ones).
METHODS: tuple[str, ...] = evaluated()

#: A uniform-to-oracle gap not above this (in accuracy) makes ``gap_closed`` NaN.
GAP_EPS = 1e-6

#: Metric columns averaged over seeds by :meth:`EvaluationResult.summary`.
METRICS: tuple[str, ...] = (
    "accuracy",
    "mean_cost",
    "rel_gain_vs_uniform",
    "gap_closed",
    "imitation_accuracy",
    "regret",
    "regret_bound",
    "compute_saved_at_uniform_acc",
    "cost_error",
)
