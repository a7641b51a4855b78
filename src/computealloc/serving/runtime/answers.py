"""The answer of one query: the vote over its samples, and what the query is charged.

:class:`RuntimeAnswer` is what every runtime returns for a query; :func:`voted_answer` builds
it from the samples that voted, and :func:`charged` lists the samples a query pays for (those
its calls returned, then every other reply its backends received for it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from computealloc.data.backends.base import Completion
from computealloc.estimation.kinds import Combine
from computealloc.estimation.voting import answer_key, majority_vote

__all__ = ["RuntimeAnswer", "charged", "prompt_tokens", "voted_answer"]


@dataclass(frozen=True)
class RuntimeAnswer:
    """What the runtime did for one query.

    Attributes
    ----------
    answer : str or None
        The voted answer (None when every sample abstained).
    text : str
        Full response text of the first sample of the winning cluster (of the first sample when
        every sample abstained).
    action : str
        Spec of the action taken, e.g. ``"majority@4"``.
    k : int
        Samples that voted (the action's ``K``, or the probes when there were more of them).
    model : str
        Model of the backend that answered.
    cost : float
        Realised cost of the query in the policy's cost unit, probes included once.
    lam : float
        Dual price the decision was taken at.
    samples : tuple of Completion
        Every sample drawn for the query, probes first; the last ``k`` are those that voted.
    correct : bool or None
        Whether the answer is right, when the samples come from a graded log (replay).
    finish_reason : str or None
        Finish reason of the sample whose text is returned.
    index : int
        Position of the sample whose text is returned among the ``k`` that voted.
    """

    answer: str | None
    text: str
    action: str
    k: int
    model: str
    cost: float
    lam: float
    samples: tuple[Completion, ...]
    correct: bool | None = None
    finish_reason: str | None = None
    index: int = 0

    @property
    def prompt_tokens(self) -> int | None:
        """Prompt tokens of the query (of one request), as the backend reported them."""
        return prompt_tokens(self.samples)

    def choices(self, n: int) -> list[Completion]:
        """The samples of the ``n`` best distinct answers, the returned answer first.

        Answer clusters (as the vote formed them) are ranked by their votes, ties by first
        appearance; each gives its first sample. Fewer than ``n`` come back when the voters
        hold fewer distinct answers; only the returned sample when none had an answer.
        """
        voters = self.samples[len(self.samples) - self.k :]
        first: dict[str, int] = {}
        votes: Counter[str] = Counter()
        for j, completion in enumerate(voters):
            key = answer_key(completion)
            if key is not None:
                first.setdefault(key, j)
                votes[key] += 1
        winner = answer_key(voters[self.index])
        ranked = sorted(first, key=lambda a: (a != winner, -votes[a], first[a]))
        picks = [self.index if a == winner else first[a] for a in ranked] or [self.index]
        return [voters[j] for j in picks[:n]]


def charged(returned: Sequence[Completion], received: Sequence[Completion]) -> list[Completion]:
    """What a query is charged: the samples its backend calls ``returned``, then every other
    completion the backends ``received`` for it (a :func:`~computealloc.data.backends.receipt`:
    replies of calls that then failed or were cancelled, replies a fallback discarded).

    A completion counts once (by identity); a backend that records nothing is charged for
    what it returned.
    """
    seen = {id(c) for c in returned}
    return [*returned, *(c for c in received if id(c) not in seen)]


def prompt_tokens(samples: Sequence[Completion]) -> int | None:
    """Prompt tokens of one request of a query, the largest any of its samples reported."""
    counts = [c.prompt_tokens for c in samples if c.prompt_tokens is not None]
    return max(counts) if counts else None


def voted_answer(
    voted: Sequence[Completion],
    drawn: Sequence[Completion],
    *,
    action: str,
    model: str,
    cost: float,
    lam: float,
    rng: np.random.Generator | None,
    combine: Combine | None = None,
) -> RuntimeAnswer:
    """The answer of a query: ``combine`` (by default the plurality vote) over ``voted``
    (``drawn``: all it charged)."""
    vote = majority_vote(voted, rng=rng) if combine is None else combine(voted, rng)
    chosen = voted[vote.index]
    abstained = False if chosen.from_log else None
    return RuntimeAnswer(
        answer=vote.answer,
        text=chosen.text,
        action=action,
        k=len(voted),
        model=model,
        cost=cost,
        lam=lam,
        samples=tuple(drawn),
        correct=chosen.correct if vote.answer is not None else abstained,
        finish_reason=chosen.finish_reason,
        index=vote.index,
    )
