"""``best_of@K``: the highest-``score`` sample of K (a verifier or reward model)."""

from __future__ import annotations

import numpy as np

from computealloc.estimation.kernels import ClusteredSamples, Float, Int, best_of_accuracy, padded
from computealloc.estimation.kinds.base import Kind, register


def _accuracy(pools: ClusteredSamples, ks: Int) -> Float:
    scores, ok = padded(pools, pools.score)
    return np.column_stack([best_of_accuracy(scores, ok, int(k)) for k in ks])


KIND = register(
    Kind(
        name="best_of",
        summary="the highest-scored of K samples (a verifier or reward model's `score`)",
        accuracy=_accuracy,
        needs=("score",),
        live_reason="it needs a verifier score per sample, which live backends do not return",
    )
)
