"""Apply a fitted policy to live queries under a budget.

For each query the runtime computes the policy's features (drawing ``probe_m`` probe samples
first when the policy reads probe features), scores the actions, picks
``argmax_a score[a] - lam * cost[a]`` with the dual price ``lam`` of an online
:class:`~computealloc.serving.budget.BudgetController`, draws the action's samples from the backend
of its model, votes, and charges what the calls really cost. Queries that arrive together (a
server under load) are decided as one batch, so feature computation is vectorised across them.

Modules
-------
- :mod:`~computealloc.serving.runtime.base`: :class:`AnsweringRuntime`, the interface every runtime
  offers (the server and the fleet use it), and :func:`upstream_stats`.
- :mod:`~computealloc.serving.runtime.policy_runtime`: :class:`Runtime`, the per-query runtime of a
  fitted policy (decide in batches, draw, vote, charge).
- :mod:`~computealloc.serving.runtime.ledger`: :class:`Ledger` (what was spent) and
:class:`InFlight`
  (replies of the queries not yet settled).
- :mod:`~computealloc.serving.runtime.answers`: :class:`RuntimeAnswer`, :func:`voted_answer` and
  :func:`charged` (what a query pays for).
- :mod:`~computealloc.serving.runtime.features`: :func:`live_features` and the feature function a
  policy is scored with.
- :mod:`~computealloc.serving.runtime.plans`: how each action is executed (backend, arm, draws,
  combination) and the pricing of its arms.
- :mod:`~computealloc.serving.runtime.checks`: parameter checks (:func:`check_sampling`,
  :func:`check_prompt`, and those of :class:`Runtime`).

Every public name is importable from :mod:`computealloc.serving.runtime` itself.
"""

from __future__ import annotations

from computealloc.estimation.voting import Vote, answer_key, majority_vote
from computealloc.serving.runtime.answers import RuntimeAnswer, charged, voted_answer
from computealloc.serving.runtime.base import AnsweringRuntime, upstream_stats
from computealloc.serving.runtime.checks import check_prompt, check_sampling
from computealloc.serving.runtime.features import FeatureFunction, live_features
from computealloc.serving.runtime.ledger import Flight, InFlight, Ledger
from computealloc.serving.runtime.policy_runtime import Runtime

__all__ = [
    "AnsweringRuntime",
    "FeatureFunction",
    "Flight",
    "InFlight",
    "Ledger",
    "Runtime",
    "RuntimeAnswer",
    "Vote",
    "answer_key",
    "charged",
    "check_prompt",
    "check_sampling",
    "live_features",
    "majority_vote",
    "upstream_stats",
    "voted_answer",
]
