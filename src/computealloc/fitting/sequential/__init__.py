"""Sequential allocation: sample one answer at a time and stop when the vote is settled.

Adaptive-Consistency (Aggarwal et al., EMNLP 2023) and Early-Stopping Self-Consistency (Li et
al., ICLR 2024) do not choose a compute level up front: they draw answers one at a time (or one
window at a time) and stop as soon as a statistic of the answers so far says the plurality is
settled. This module holds

- the published stopping rules, written from their definitions: :class:`BetaRule` (the
  Adaptive-Consistency default), :class:`DirichletRule`, :class:`EntropyRule`,
  :class:`MajorityShareRule` and the ESC window rule :class:`WindowRule`;
- :class:`LagrangianStopping`, computealloc's sequential policy: optimal stopping for
  ``max E[accuracy] - lam * E[samples]`` on an empirical model of answer-count trajectories
  learned from training queries, optionally per difficulty group of a learned prior;
- an offline evaluator that replays each query's logged samples in many seeded random orders
  (:func:`replay`, :func:`evaluate_stopping`), a budget calibration that tunes any rule's knob
  so that the mean number of samples equals a budget (:func:`calibrate_stopping`), the
  evaluation protocol entry point :func:`sequential_methods`, and :func:`fit_stopping`, which
  fits one rule for serving.

Every rule answers ``should_stop(answers)`` for one live query (the runtime's per-sample
call) and is evaluated offline on arrays of replayed trajectories by the same arithmetic.

Conventions
-----------
``t`` counts the samples drawn so far, abstaining ones (no answer) included; abstaining samples
vote for nothing. The answer returned at the stop is the plurality of the answers drawn, ties
split uniformly at random, so its expected correctness is ``1/m`` when the correct answer is
one of ``m`` tied leaders. A rule never stops before the first answer, and always stops at the
cap: the query's number of logged samples, or ``max_samples`` when smaller.
"""

from __future__ import annotations

from computealloc.fitting.sequential.calibration import (
    CalibratedStopping,
    StoppingResult,
    calibrate_stopping,
    evaluate_stopping,
    stopping_curve,
)
from computealloc.fitting.sequential.lagrangian import LagrangianStopping
from computealloc.fitting.sequential.pools import AnswerPools, Trajectories, answer_pools, replay
from computealloc.fitting.sequential.protocol import (
    FIT_RULES,
    PRIOR_GROUPS,
    SEQUENTIAL_METHODS,
    StoppingFit,
    fit_stopping,
    sequential_methods,
)
from computealloc.fitting.sequential.rules import (
    BetaRule,
    DirichletRule,
    EntropyRule,
    MajorityShareRule,
    StoppingRule,
    WindowRule,
    dirichlet_leader_probability,
)

__all__ = [
    "FIT_RULES",
    "PRIOR_GROUPS",
    "SEQUENTIAL_METHODS",
    "AnswerPools",
    "BetaRule",
    "CalibratedStopping",
    "DirichletRule",
    "EntropyRule",
    "LagrangianStopping",
    "MajorityShareRule",
    "StoppingFit",
    "StoppingResult",
    "StoppingRule",
    "Trajectories",
    "WindowRule",
    "answer_pools",
    "calibrate_stopping",
    "dirichlet_leader_probability",
    "evaluate_stopping",
    "fit_stopping",
    "replay",
    "sequential_methods",
    "stopping_curve",
]
