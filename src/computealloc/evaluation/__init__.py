"""Honest evaluation of allocation policies: seeded splits, two protocols, budget sweeps.

:func:`evaluate` runs every method on the test queries of several seeded query splits, under
one or both protocols (DESIGN, "Evaluation protocol"):

- ``"in-sample"``: accuracies are estimated from all samples of each query, as the paper does;
  decisions and reported numbers read the same table, so the oracle is optimistic;
- ``"held-out"``: each query's samples are split in two halves by a seeded shuffle
  (:func:`computealloc.data.splits.split_samples`); every decision (oracle labels, policy
  training, calibration, probe features) reads half A; every reported accuracy and cost is
  read from half B.

Methods (names in the ``method`` column)
---------------------------------------
``uniform``, ``random``
    Budget-matched baselines (:class:`~computealloc.fitting.policies.Uniform`,
    :class:`~computealloc.fitting.policies.Random`), allocated on the test batch.
``length``, ``imitation``, ``value``
    :class:`~computealloc.fitting.policies.LengthHeuristic`,
    :class:`~computealloc.fitting.policies.Imitation` and
    :class:`~computealloc.fitting.policies.Value` on prompt features: fitted on the train queries,
    dual price calibrated on the calibration queries, then each test query decided on its own
    (streaming; the realised cost on test is reported as it falls).
``imitation+probe``, ``value+probe``
    The same on prompt plus probe features: ``probe_m`` samples of each query are drawn first
    and read; they are reused in the vote and charged once (majority@k costs ``max(k, m)``),
    and the vote's accuracy given the probes is exact (:mod:`computealloc.estimation.reuse`). Under
    held-out the probes come from half A and the further votes from half B.
``<policy>/batch``
    The learned policy allocating the whole test batch at once
    (:meth:`~computealloc.fitting.policies.BasePolicy.allocate`: the budget is solved on the batch's
    predicted scores, never on its outcomes), so its mean cost is the budget exactly.
``router/threshold``
    RouteLLM's threshold router (Ong et al. 2024) for logs with two models: a
    :class:`~computealloc.fitting.policies.Value` with ``target="gain"`` fitted on the train queries
    scores each query by the predicted accuracy gain of the strong model's cheapest action
    over the weak model's (the strong model is the more accurate one on train); the share of
    strong calls is the one whose routed mean cost on the calibration queries is the budget,
    and :func:`computealloc.evaluation.routing.threshold_router` sends a test query to the strong
    model when its score clears the calibration scores' quantile at that share (streaming;
    the realised test cost is reported as it falls). Needs a log, and actions, of exactly
    two models.
Sequential methods (:data:`SEQUENTIAL`)
    :func:`computealloc.fitting.sequential.sequential_methods` on the same query split, seed and
    protocol (decisions on half A, replays of half B under held-out): the budget-calibrated
    stopping rules ``adaptive-consistency``, ``dirichlet``, ``entropy``,
    ``majority-share`` and ``esc``, computealloc's optimal stopping policy
    ``sequential/pooled``, ``sequential/prior`` and ``sequential`` (the better of the two
    on the calibration queries), and the published settings ``adaptive-consistency@0.95``
    and ``esc@5``, which are not calibrated to a budget (``budget`` NaN). They need a
    single-model log, majority actions, ``cost="samples"``, at least 2 samples per query
    and budgets >= 1; they have no per-query records and no imitation metrics.
Early exit along the thought (:data:`THINKING`)
    On a checkpoint log (``log`` a :class:`~computealloc.data.checkpoints.CheckpointLog`, or
    ``checkpoints`` given), :func:`computealloc.evaluation.thinking.thinking_rows` on the same query
    split, seed and sample halves: the budget-calibrated rules ``uniform-cap`` (budget
    forcing, ``cap@T`` for every query), ``stable``, ``conf`` and computealloc's
    ``learned-exit``, and ``full/majority@1`` (one trace thought to its end; ``budget``
    NaN), the reference of "tokens to reach full-thinking accuracy". They need a
    single-model checkpoint log and ``cost="tokens"`` without prices; they have no per-query
    records and no imitation metrics.
``oracle``
    :func:`computealloc.estimation.oracle.solve` on the test queries' decision table, read on the
    report table: the honest oracle (under in-sample the two tables are one).
``oracle+probe``
    The oracle that also knows the probe answers (solved on the decision table of the probe
    policies): the reference the probe policies imitate.
``oracle_in_sample``
    The oracle solved and read on the report table: what an in-sample evaluation would claim.

Metrics (columns of :attr:`EvaluationResult.results`)
-----------------------------------------------------
``accuracy``, ``mean_cost`` on the test queries; ``rel_gain_vs_uniform`` =
``accuracy / uniform - 1``; ``gap_closed`` = ``(accuracy - uniform) / (oracle - uniform)``
(NaN unless the oracle beats uniform by more than ``GAP_EPS``); ``imitation_accuracy``
(share of test queries given the reference oracle's action), ``regret`` (reference oracle
accuracy minus accuracy) and
``regret_bound`` (imitation error times the worst per-query accuracy gap of the report
table, the bound of Zhai et al.); ``compute_saved_at_uniform_acc`` = ``1 - c / B`` with ``c``
the cost at which the method's accuracy-vs-cost curve, interpolated linearly over the budgets
evaluated, first reaches uniform's accuracy at ``B`` (conservative for concave curves; NaN
when it never does within the budgets evaluated). These per-seed metrics compare at the
nominal budget; :mod:`computealloc.evaluation.comparison` (what the report shows) compares at equal
realised cost, with intervals, and reports ``gap_closed`` only where the gap is resolved.

Modules
-------
:mod:`~computealloc.evaluation.common`
    Method groups, protocols, metric names and constants.
:mod:`~computealloc.evaluation.result`
    :class:`EvaluationResult`, its summaries and the cross-method metrics.
:mod:`~computealloc.evaluation.tables`
    The decision and report tables of one (protocol, seed).
:mod:`~computealloc.evaluation.policy_runs`
    The per-query methods (policies, router, oracles) at one budget.
:mod:`~computealloc.evaluation.stopping`
    The sequential stopping rules and the early-exit rules along the thought.
:mod:`~computealloc.evaluation.arguments`
    Validation of :func:`evaluate`'s arguments.
:mod:`~computealloc.evaluation.footprints`
    :func:`footprint`, the estimated time and memory of an evaluation.
:mod:`~computealloc.evaluation.sweep`
    :func:`evaluate`, the driver over protocols, seeds, splits and budgets.
"""

from __future__ import annotations

from computealloc.evaluation.common import (
    GAP_EPS,
    METHODS,
    PROTOCOLS,
    SEQUENTIAL,
    SEQUENTIAL_ORDERS,
    THINKING,
)
from computealloc.evaluation.common import METRICS as METRICS
from computealloc.evaluation.common import ProgressCallback as ProgressCallback
from computealloc.evaluation.common import Protocol as Protocol
from computealloc.evaluation.footprints import Footprint, footprint
from computealloc.evaluation.result import (
    EvaluationResult,
    cost_to_reach,
    routing_metrics,
)
from computealloc.evaluation.result import summarize as summarize
from computealloc.evaluation.sweep import evaluate
from computealloc.evaluation.tables import outcome_table as outcome_table
from computealloc.methods import ROUTER

__all__ = [
    "GAP_EPS",
    "METHODS",
    "PROTOCOLS",
    "ROUTER",
    "SEQUENTIAL",
    "SEQUENTIAL_ORDERS",
    "THINKING",
    "EvaluationResult",
    "Footprint",
    "cost_to_reach",
    "evaluate",
    "footprint",
    "routing_metrics",
]
# ``METRICS``, ``ProgressCallback``, ``Protocol``, ``summarize`` and ``outcome_table`` stay
# importable from here (as before the split into modules), though not in ``__all__``.
