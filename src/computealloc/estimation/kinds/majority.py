"""``majority@K``: the plurality vote of K samples, ties split uniformly at random."""

from __future__ import annotations

from computealloc.estimation.kernels import ClusteredSamples, Float, Int, majority_accuracy
from computealloc.estimation.kinds.base import Kind, register
from computealloc.estimation.voting import majority_vote


def _accuracy(pools: ClusteredSamples, ks: Int) -> Float:
    return majority_accuracy(
        pools.gold, pools.others, pools.abstain, ks, others_correct=pools.others_correct
    )


KIND = register(
    Kind(
        name="majority",
        summary="plurality vote of K samples, ties split uniformly at random",
        accuracy=_accuracy,
        combine=lambda samples, rng: majority_vote(samples, rng=rng),
    )
)
