"""``pass@K``: correct when any of K samples is correct (an oracle verifier; a bound)."""

from __future__ import annotations

import numpy as np

from computealloc.estimation.kernels import ClusteredSamples, Float, Int, pass_at_k
from computealloc.estimation.kinds.base import Kind, register


def _accuracy(pools: ClusteredSamples, ks: Int) -> Float:
    n_correct = pools.gold + (pools.others * pools.others_correct).sum(axis=1)
    return np.column_stack([pass_at_k(pools.n, n_correct, int(k)) for k in ks])


KIND = register(
    Kind(
        name="pass",
        summary="correct when any of K samples is (an oracle verifier: a hindsight bound)",
        accuracy=_accuracy,
        live_reason="it needs the gold answer (an oracle verifier)",
    )
)
