"""Budget calibration and offline evaluation of stopping rules on replayed pools.

:func:`calibrate_stopping` tunes any rule's knob so that its mean samples per query equal a
budget (:class:`CalibratedStopping`, a per-query mix of two adjacent settings where no single
one hits it); :func:`evaluate_stopping` replays each query's pool in seeded random orders and
returns the rule's expected accuracy and samples (:class:`StoppingResult`);
:func:`stopping_curve` does both over a list of budgets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.checks import check_budget
from computealloc.fitting.sequential._checks import prior_array
from computealloc.fitting.sequential.pools import AnswerPools, Trajectories, replay_cached
from computealloc.fitting.sequential.rules import StoppingRule
from computealloc.methods import rule_label

if TYPE_CHECKING:
    from computealloc.data.backends.base import Backend
    from computealloc.serving.deploy import RuntimeOptions
    from computealloc.serving.runtime import AnsweringRuntime

__all__ = [
    "CalibratedStopping",
    "StoppingResult",
    "calibrate_stopping",
    "evaluate_stopping",
    "stopping_curve",
]

Float = NDArray[np.float64]


# --------------------------------------------------------------------------- calibration

#: Bisection steps on a continuous knob (enough to land on the jump of a step function).
_BISECT_STEPS = 60


@dataclass(frozen=True)
class CalibratedStopping:
    """A rule whose knob was set so that its mean samples equal a budget.

    Where no single knob value hits the budget (the mean samples jump over it), each query
    uses ``high`` with probability ``mix`` and ``low`` otherwise, so the expected mean is the
    budget.

    Attributes
    ----------
    low, high : StoppingRule
        The cheaper and the costlier setting (the same rule when one setting hits the budget
        or the budget is out of reach).
    mix : float
        Probability of ``high`` per query.
    budget : float
        The target mean samples per query.
    samples : float
        Expected mean samples reached on the calibration pools; differs from ``budget`` only
        when the budget is below the rule's cheapest or above its costliest setting.
    accuracy : float
        Expected accuracy on the calibration pools.
    """

    low: StoppingRule
    high: StoppingRule
    mix: float
    budget: float
    samples: float
    accuracy: float

    @property
    def max_samples(self) -> int | None:
        return self.low.max_samples

    def pick(self, random_state: int | np.random.Generator | None = None) -> StoppingRule:
        """The setting one query uses: ``high`` with probability ``mix``."""
        rng = np.random.default_rng(random_state)
        return self.high if rng.random() < self.mix else self.low

    def describe(self) -> str:
        """The knob values and the mix, e.g. ``"threshold=0.9375|0.9375 mix=0.31"``."""
        name = self.low.knob
        lo, hi = getattr(self.low, name), getattr(self.high, name)
        return f"{name}={lo:.6g}|{hi:.6g} mix={self.mix:.3f}"

    def knob_value(self) -> float:
        """The mix-weighted knob: ``(1 - mix) * low + mix * high``."""
        name = self.low.knob
        low, high = float(getattr(self.low, name)), float(getattr(self.high, name))
        return (1.0 - self.mix) * low + self.mix * high

    # --- the deployable contract (computealloc.serving.deploy.Deployable)
    # ----------------------------

    @property
    def deploy_unit(self) -> str:
        """``"samples"``: a stopping rule spends samples one at a time."""
        return "samples"

    @property
    def deploy_prices(self) -> dict[str, str]:
        """Empty: every sample costs 1."""
        return {}

    @property
    def deploy_actions(self) -> tuple[str, ...]:
        """``"LABEL@t"`` for every sample count up to the cap (empty without a cap)."""
        label = rule_label(type(self.low).__name__)
        return tuple(f"{label}@{t}" for t in range(1, (self.max_samples or 0) + 1))

    def describe_rule(self) -> str:
        """``"stopping rule CLASS"``."""
        return f"stopping rule {type(self.low).__name__}"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the calibrated rule as JSON
        (:func:`computealloc.fitting.persist.save_stopping`)."""
        from computealloc.fitting.persist import save_stopping

        save_stopping(self, path)

    def open_runtime(
        self,
        backends: Backend | Mapping[str, Backend],
        *,
        budget: float,
        options: RuntimeOptions,
    ) -> AnsweringRuntime:
        """A :class:`~computealloc.serving.sequential_runtime.SequentialRuntime` of this rule.

        Raises
        ------
        ValueError
            When ``backends`` holds several arms (a stopping rule samples one model).
        """
        from computealloc.serving.sequential_runtime import SequentialRuntime

        if isinstance(backends, Mapping):
            raise ValueError(
                f"A stopping rule samples one model; the backends serve {len(backends)} models "
                f"({', '.join(backends)}). Pass --model to pick one."
            )
        return SequentialRuntime(
            self,
            backends,
            budget=budget,
            batch_size=options.batch_size,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
        )


def _bracket(
    cost: Callable[[float], float], rule: StoppingRule, width: int, budget: float
) -> tuple[float, float, float, float]:
    """Knob values ``(cheap, costly)`` next to each other whose costs bracket ``budget``."""
    lo, hi = rule.knob_range
    if rule.knob_integer:
        hi = float(min(hi, width + 1))
    cheap, costly = (lo, hi) if rule.knob_raises_cost else (hi, lo)
    c_cheap, c_costly = cost(cheap), cost(costly)
    if budget <= c_cheap:
        return cheap, cheap, c_cheap, c_cheap
    if budget >= c_costly:
        return costly, costly, c_costly, c_costly
    for _ in range(_BISECT_STEPS):
        mid = float((cheap + costly) // 2) if rule.knob_integer else (cheap + costly) / 2
        if mid in (cheap, costly):
            break
        c_mid = cost(mid)
        if c_mid <= budget:
            cheap, c_cheap = mid, c_mid
        else:
            costly, c_costly = mid, c_mid
    return cheap, costly, c_cheap, c_costly


def calibrate_stopping(
    rule: StoppingRule,
    pools: AnswerPools,
    budget: float,
    *,
    prior: ArrayLike | None = None,
    n_orders: int = 64,
    random_state: int = 0,
) -> CalibratedStopping:
    """Set a rule's knob so that its mean samples per query on ``pools`` equal ``budget``.

    The knob (``threshold``, ``window`` or ``lam``) moves the mean samples monotonically;
    bisection finds the two adjacent settings whose replayed mean samples bracket the budget,
    and a per-query mix of the two hits it in expectation.

    Parameters
    ----------
    rule : StoppingRule
        The rule (fitted, for :class:`LagrangianStopping`); its other parameters are kept.
    pools : AnswerPools
        Calibration queries: neither the queries a learned rule was fitted on nor those it
        will be evaluated on.
    budget : float
        Target mean samples per query, >= 1.
    prior : array-like of shape (n_queries,), optional
        The calibration queries' prior scores, for rules that read them.
    n_orders : int
        Replayed orders per query.
    random_state : int
        Seed of the orders.

    Returns
    -------
    CalibratedStopping

    Notes
    -----
    A budget out of the rule's reach (below the samples of its cheapest setting, above those
    of its costliest) returns that setting; ``samples`` says what is reached.

    Examples
    --------
    >>> from computealloc.fitting.sequential import BetaRule
    >>> pools = AnswerPools(np.array([3, 1]), np.array([[1], [3]]), np.array([0, 0]),
    ...                     ("q1", "q2"))
    >>> cal = calibrate_stopping(BetaRule(), pools, 2.5)
    >>> round(cal.samples, 6)
    2.5
    """
    budget = check_budget(budget, "calibrate_stopping")
    if budget < 1.0:
        raise ValueError(
            f"The 'budget' parameter of calibrate_stopping must be a float in [1, inf) "
            f"(samples per query). Got {budget!r} instead."
        )
    _check_rule(rule, "calibrate_stopping")
    traj = replay_cached(pools, n_orders, random_state, rule.max_samples)
    pri = prior_array(prior, pools.n_queries)

    def cost(value: float) -> float:
        return float(rule.with_knob(value).stopping_times(traj, pri).mean())

    cheap, costly, c_cheap, c_costly = _bracket(cost, rule, traj.width, budget)
    gap = c_costly - c_cheap
    mix = float(np.clip((budget - c_cheap) / gap, 0.0, 1.0)) if gap > 0 else 0.0
    low, high = rule.with_knob(cheap), rule.with_knob(costly)
    calibrated = CalibratedStopping(low, high, mix, budget, 0.0, 0.0)
    acc, samples = _expected(calibrated, traj, pri)
    return CalibratedStopping(low, high, mix, budget, float(samples.mean()), float(acc.mean()))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class StoppingResult:
    """Expected accuracy and samples of a stopping rule over replayed orders.

    Attributes
    ----------
    accuracy, mean_samples : float
        Means over queries and orders.
    accuracy_se, samples_se : float
        Monte Carlo standard errors over the orders (the queries are held fixed).
    query_accuracy, query_samples : ndarray of shape (n_queries,)
        Per-query expectations over the orders.
    """

    accuracy: float
    mean_samples: float
    accuracy_se: float
    samples_se: float
    query_accuracy: Float
    query_samples: Float


def _outcomes(rule: StoppingRule, traj: Trajectories, prior: Float | None) -> tuple[Float, Float]:
    """Correctness and samples at the stop of every replayed order, each (N, R)."""
    times = rule.stopping_times(traj, prior)
    acc = np.take_along_axis(traj.correct, (times - 1)[..., None], axis=2)[..., 0]
    return acc, times.astype(np.float64)


def _expected(
    rule: StoppingRule | CalibratedStopping, traj: Trajectories, prior: Float | None
) -> tuple[Float, Float]:
    """Per (query, order) expected correctness and samples, the mix averaged exactly."""
    if isinstance(rule, StoppingRule):
        return _outcomes(rule, traj, prior)
    acc_lo, n_lo = _outcomes(rule.low, traj, prior)
    if rule.mix == 0.0:
        return acc_lo, n_lo
    acc_hi, n_hi = _outcomes(rule.high, traj, prior)
    w = rule.mix
    return (1 - w) * acc_lo + w * acc_hi, (1 - w) * n_lo + w * n_hi


def evaluate_stopping(
    rule: StoppingRule | CalibratedStopping,
    pools: AnswerPools,
    *,
    prior: ArrayLike | None = None,
    n_orders: int = 128,
    random_state: int = 0,
) -> StoppingResult:
    """Expected accuracy and samples of a rule, replaying each pool in random orders.

    Parameters
    ----------
    rule : StoppingRule or CalibratedStopping
    pools : AnswerPools
        The queries' logged samples (under the held-out protocol: half B); each query's pool
        size caps its samples.
    prior : array-like of shape (n_queries,), optional
        Prior scores, for rules that read them.
    n_orders : int
        Replayed orders per query.
    random_state : int
        Seed of the orders (the same seed pairs the errors of different rules).

    Returns
    -------
    StoppingResult

    Examples
    --------
    >>> from computealloc.fitting.sequential import BetaRule, WindowRule
    >>> pools = AnswerPools(np.array([3]), np.array([[1]]), np.array([0]), ("q",))
    >>> res = evaluate_stopping(BetaRule(threshold=1.0), pools)  # never settled: votes all 4
    >>> res.accuracy, res.mean_samples
    (1.0, 4.0)
    >>> round(evaluate_stopping(WindowRule(window=1), pools, n_orders=4000).accuracy, 2)
    0.75
    """
    _check_rule(rule, "evaluate_stopping")
    traj = replay_cached(pools, n_orders, random_state, rule.max_samples)
    acc, samples = _expected(rule, traj, prior_array(prior, pools.n_queries))
    se = _order_se
    return StoppingResult(
        float(acc.mean()),
        float(samples.mean()),
        se(acc),
        se(samples),
        acc.mean(axis=1),
        samples.mean(axis=1),
    )


def _order_se(values: Float) -> float:
    """Monte Carlo standard error over the orders (axis 1) of the mean over queries."""
    r = values.shape[1]
    return float(values.mean(axis=0).std(ddof=1) / np.sqrt(r)) if r > 1 else float("nan")


def stopping_curve(
    rule: StoppingRule,
    calibration: AnswerPools,
    test: AnswerPools,
    budgets: Iterable[float],
    *,
    prior_calibration: ArrayLike | None = None,
    prior_test: ArrayLike | None = None,
    n_orders: int = 64,
    random_state: int = 0,
) -> pd.DataFrame:
    """Accuracy against mean samples: calibrate on ``calibration`` per budget, score on ``test``.

    Parameters
    ----------
    rule : StoppingRule
    calibration, test : AnswerPools
        Disjoint query sets.
    budgets : iterable of float
        Mean samples per query, each >= 1.
    prior_calibration, prior_test : array-like, optional
        Prior scores of the two query sets (for rules that read them).
    n_orders : int
        Replayed orders per query.
    random_state : int
        Seed of the calibration orders; the test orders use ``random_state + 1``.

    Returns
    -------
    DataFrame
        One row per budget: ``budget, accuracy, mean_samples, accuracy_se,
        calibration_samples, setting``.
    """
    rows = []
    for budget in budgets:
        cal = calibrate_stopping(
            rule,
            calibration,
            budget,
            prior=prior_calibration,
            n_orders=n_orders,
            random_state=random_state,
        )
        res = evaluate_stopping(
            cal, test, prior=prior_test, n_orders=n_orders, random_state=random_state + 1
        )
        rows.append(
            {
                "budget": float(budget),
                "accuracy": res.accuracy,
                "mean_samples": res.mean_samples,
                "accuracy_se": res.accuracy_se,
                "calibration_samples": cal.samples,
                "setting": cal.describe(),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- validation


def _check_rule(rule: object, where: str) -> None:
    if not isinstance(rule, (StoppingRule, CalibratedStopping)):
        raise TypeError(
            f"The 'rule' parameter of {where} must be a StoppingRule. Got {type(rule).__name__} "
            "instead."
        )
