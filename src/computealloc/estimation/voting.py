"""Live voting: the plurality vote over sampled completions, clustered like the estimators.

A replayed sample votes with its logged answer, any other with the answer
:func:`~computealloc.data.grading.extract_answer` finds in its text; answers are clustered by
:func:`~computealloc.data.grading.normalize`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from computealloc.data.backends.base import Completion
from computealloc.data.grading import extract_answer, normalize

__all__ = ["TIE_RTOL", "Vote", "answer_key", "answer_of", "majority_vote"]

#: Weighted clusters within this relative distance of the largest sum tie (counts never do).
TIE_RTOL = 1e-12


@dataclass(frozen=True)
class Vote:
    """Outcome of a plurality vote.

    Attributes
    ----------
    answer : str or None
        The winning answer as extracted (not normalised); None when every sample abstained.
    index : int
        Position of the winning cluster's first sample (0 when every sample abstained).
    count : int
        Votes of the winning cluster.
    """

    answer: str | None
    index: int
    count: int


def answer_of(completion: Completion) -> str | None:
    """The logged answer of a replayed sample, else the answer extracted from its text."""
    if completion.from_log:
        return completion.answer
    return extract_answer(completion.text)


def answer_key(completion: Completion) -> str | None:
    """The normalised answer a sample votes for; None when it has no answer.

    Two samples vote for the same answer exactly when their keys are equal (the clustering
    of :func:`majority_vote`).
    """
    answer = answer_of(completion)
    return None if answer is None else normalize(answer)


def majority_vote(
    completions: Sequence[Completion],
    *,
    rng: np.random.Generator | None = None,
    weight: Callable[[int], float] | None = None,
) -> Vote:
    """Plurality vote over the answers of some samples.

    Answers are clustered by :func:`computealloc.data.grading.normalize`; a sample without an answer
    abstains. Ties between the largest clusters go to a uniformly random one with ``rng`` (the
    rule the estimators assume), else to the cluster seen first. With ``weight``, a cluster
    weighs the summed ``weight(j)`` of its samples instead of their number, and clusters within
    :data:`TIE_RTOL` (relative) of the largest sum tie.

    Parameters
    ----------
    completions : sequence of Completion
        The samples; a replayed sample votes with its logged answer, any other with
        :func:`computealloc.data.grading.extract_answer` of its text.
    rng : numpy.random.Generator, optional
        Source of the tie-breaking draw.
    weight : callable, optional
        ``weight(j)``: the weight of sample ``j``, asked only of samples that vote.

    Returns
    -------
    Vote

    Examples
    --------
    >>> votes = [Completion("so \\\\boxed{4}"), Completion("#### 4.0"), Completion("= 5")]
    >>> majority_vote(votes)
    Vote(answer='4', index=0, count=2)
    """
    if len(completions) == 1 and weight is None:  # the common case, without normalising
        answer = answer_of(completions[0])
        return Vote(answer, 0, 1) if answer is not None else Vote(None, 0, 0)
    clusters: dict[str, list[int]] = {}
    totals: dict[str, float] = {}
    answers: list[str | None] = []
    for j, completion in enumerate(completions):
        answer = answer_of(completion)
        answers.append(answer)
        if answer is not None:
            key = normalize(answer)
            clusters.setdefault(key, []).append(j)
            totals[key] = totals.get(key, 0.0) + (1.0 if weight is None else weight(j))
    if not clusters:
        return Vote(None, 0, 0)
    best = max(totals.values())
    tied = [m for key, m in clusters.items() if totals[key] >= best - TIE_RTOL * abs(best)]
    winner = tied[int(rng.integers(len(tied)))] if rng is not None and len(tied) > 1 else tied[0]
    return Vote(answers[winner[0]], winner[0], len(winner))
