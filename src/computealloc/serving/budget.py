"""Online budget control: a dual price driven by the realised spend of a query stream.

A calibrated policy spends the budget ``B`` on average only while new queries look like its
calibration queries. When the mix drifts (a run of hard queries, a new user population) the
calibrated price ``lam`` spends too much or too little. :class:`BudgetController` corrects the
price from what the stream has actually cost, so the running mean cost returns to ``B``.

The update is online dual ascent on the budget constraint ``mean_t c_t <= B``, optionally
with a second integral. With ``x_t = D_t / B`` the overspend so far in queries' worth of
budget (``D_t = sum_{s<t} c_s - B``) and ``A_t = sum_{s<t} x_s`` its running sum,

    lam_t = clip(lam_0 + scale * (gain * x_t + integral * A_t), lam_min, lam_max).

The ``gain`` term alone is dual (sub)gradient ascent: each query moves the price by
``gain * scale * (c_t - B) / B``, and the mean cost's deviation from ``B`` shrinks like
``1 / t`` (see :class:`BudgetController`). It leaves the overspend of a shift of the mix in
place (the new price needs it); the optional ``integral`` term absorbs the shift into the
price instead, so the deficit itself is paid back.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["TOTALS", "BudgetController", "ControllerState"]

#: The totals a controller's price is computed from, as named in :meth:`BudgetController.totals`.
TOTALS = ("spent", "n", "reserved", "in_flight", "area")


@dataclass(frozen=True)
class ControllerState:
    """A consistent snapshot of a :class:`BudgetController`.

    Attributes
    ----------
    lam : float
        The current dual price.
    spent : float
        Realised cost of the settled queries, in the budget's unit.
    n : int
        Settled queries.
    mean_cost : float
        ``spent / n`` (NaN before the first settled query).
    in_flight : int
        Queries decided but not yet settled.
    reserved : float
        Expected cost of the queries in flight.
    deficit : float
        Overspend so far, ``spent + reserved - budget * (n + in_flight)``.
    """

    lam: float
    spent: float
    n: int
    mean_cost: float
    in_flight: int
    reserved: float
    deficit: float


class BudgetController:
    """Dual price that keeps the running mean cost of a query stream at the budget.

    Each query is decided with the current price (:meth:`decide`, which reserves the expected
    cost of the chosen action) and settled with its realised cost when its calls return
    (:meth:`settle`). The price is

        lam = clip(lam0 + scale * (gain * x + integral * A), lam_min, lam_max),

    where ``x = (spent + reserved) / budget - (n + in_flight)`` is the overspend so far in
    queries' worth of budget (realised cost of the settled queries plus the expected cost of
    those in flight, minus the budget of all of them) and ``A`` the sum of ``x`` over the
    decided queries. Counting queries in flight at their expected cost removes the lag that
    concurrency would otherwise put into the loop.

    Parameters
    ----------
    budget : float
        Target mean cost per query ``B``, in the unit of the policy's costs; ``> 0``.
    lam0 : float
        Price at zero deficit: the policy's calibrated price.
    gain : float
        Share of ``scale`` by which the price moves per query's worth of overspend; ``> 0``.
        Larger reacts faster and is noisier.
    integral : float
        Weight of the running sum ``A``, ``>= 0``. The default 0 is plain dual ascent, whose
        guarantee below is exact. A small positive value (``gain**2 / 16`` is overdamped when a
        relative change of the price changes the mean cost by about as much) also pays the
        deficit back after a shift; too large a value makes the mean oscillate.
    scale : float
        Price unit (score units per cost unit), ``> 0``; a calibrated policy's ``|lam0|``
        is the natural choice.
    lam_min, lam_max : float
        Bounds of the price; ``lam_min <= lam0 <= lam_max``. For scores that are accuracies a
        negative price would pay for compute that lowers accuracy, hence ``lam_min = 0``.
        ``lam_min = lam_max = lam0`` fixes the price (no control).

    Notes
    -----
    Guarantee (``integral = 0``). While the bounds do not bind, ``x_t = (lam_t - lam0) /
    (gain * scale)`` exactly, so after ``t`` queries

        |mean cost - B| / B = |lam_t - lam0| / (gain * scale * t),

    which vanishes like ``1 / t`` whenever the price stays bounded, for any sequence of
    queries, drifting or not. It does when the budget is feasible (the cheapest action costs
    at most ``B``): a price that makes every query take its cheapest action stops the
    overspend, so the price cannot climb past it by more than one query's step. Measured in
    ``tests/test_runtime.py``: on a stream of real queries whose second half is much harder,
    the default controller ends within 2% of ``B`` where the calibrated fixed price
    overspends by over 15%. With ``integral > 0`` the linearised loop is a second-order
    system that also drives ``x`` back to 0 after a shift; the running sum stops while the
    price is held at a bound (anti-windup).

    Limits. (1) At ``lam_min = 0`` the budget may be slack: when even the most accurate
    actions cost less than ``B`` on average, the mean stays below ``B`` (never above). Savings
    accumulate in ``x`` and are spent later if the queries get harder, which keeps the
    cumulative mean at most ``B``. (2) Only the running mean is controlled: a single query may
    cost up to the dearest action, and over the first tens of queries the mean is noisy.
    (3) After a shift of the mix the mean drifts for some ``1 / gain`` queries before the
    price catches up. (4) A query that fails before returning any sample is not counted
    (:meth:`settle` with ``realised=None``).

    The controller is thread-safe: every method takes one lock, so concurrent requests of a
    server (threads or asyncio tasks) see consistent prices and totals.

    Fleet. Replicas that share a budget (:mod:`computealloc.serving.fleet`) each keep their own
    totals here and add the rest of the fleet's, :meth:`set_others`: the price is then the
    same function of the fleet's totals on every replica. Alone, the others are zero and the
    controller is exactly the single-process one.

    Examples
    --------
    >>> ctl = BudgetController(2.0, lam0=0.1, scale=0.1)
    >>> actions, lam = ctl.decide([[0.5, 0.9]], [1.0, 4.0])
    >>> actions.tolist(), lam
    ([1], 0.1)
    >>> ctl.settle(4.0, 4.0)
    >>> round(ctl.lam, 4)  # overspent one query's budget: the price rises by gain * scale
    0.12
    """

    def __init__(
        self,
        budget: float,
        lam0: float = 0.0,
        *,
        gain: float = 0.2,
        integral: float = 0.0,
        scale: float = 1.0,
        lam_min: float = 0.0,
        lam_max: float = math.inf,
    ) -> None:
        self.budget = _check_real("budget", budget, positive=True)
        self.gain = _check_real("gain", gain, positive=True)
        self.integral = _check_real("integral", integral, low=0.0)
        self.scale = _check_real("scale", scale, positive=True)
        self.lam0 = _check_real("lam0", lam0)
        self.lam_min = _check_bound("lam_min", lam_min)
        self.lam_max = _check_bound("lam_max", lam_max)
        if not self.lam_min <= self.lam0 <= self.lam_max:
            raise ValueError(
                "The 'lam0' parameter of BudgetController must lie in [lam_min, lam_max] = "
                f"[{self.lam_min}, {self.lam_max}]. Got {lam0!r} instead."
            )
        self._lock = threading.Lock()
        self._spent = 0.0
        self._n = 0
        self._reserved = 0.0
        self._in_flight = 0
        self._area = 0.0
        self._others = dict.fromkeys(TOTALS, 0.0)
        self._listeners: list[Callable[[], None]] = []

    def _deficit(self) -> float:
        """Overspend so far in queries' worth of budget, ``D / budget`` (over the fleet)."""
        o = self._others
        cost = self._spent + self._reserved + o["spent"] + o["reserved"]
        return cost / self.budget - (self._n + self._in_flight + o["n"] + o["in_flight"])

    def _raw_price(self) -> float:
        area = self._area + self._others["area"]
        return self.lam0 + self.scale * (self.gain * self._deficit() + self.integral * area)

    def _price(self) -> float:
        return float(min(max(self._raw_price(), self.lam_min), self.lam_max))

    def _integrate(self, queries: int) -> None:
        """Add ``queries`` steps of the current deficit to its running sum (anti-windup)."""
        raw, x = self._raw_price(), self._deficit()
        if (raw > self.lam_max and x > 0) or (raw < self.lam_min and x < 0):
            return
        self._area += queries * x

    @property
    def lam(self) -> float:
        """The current dual price."""
        with self._lock:
            return self._price()

    def state(self) -> ControllerState:
        """A consistent snapshot of the price and the totals (of the fleet, with others)."""
        with self._lock:
            o = self._others
            n, spent = self._n + int(o["n"]), self._spent + o["spent"]
            return ControllerState(
                lam=self._price(),
                spent=spent,
                n=n,
                mean_cost=spent / n if n else math.nan,
                in_flight=self._in_flight + int(o["in_flight"]),
                reserved=self._reserved + o["reserved"],
                deficit=self._deficit() * self.budget,
            )

    def totals(self) -> dict[str, float]:
        """This controller's own totals, named by :data:`TOTALS` (the others excluded)."""
        with self._lock:
            own = (self._spent, self._n, self._reserved, self._in_flight, self._area)
        return dict(zip(TOTALS, map(float, own), strict=True))

    def set_others(self, others: Mapping[str, float]) -> None:
        """Set the totals of the rest of the fleet (each of :data:`TOTALS`; missing ones 0)."""
        values = {name: float(others.get(name, 0.0)) for name in TOTALS}
        with self._lock:
            self._others = values

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change of the totals (outside the lock)."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()

    def decide(self, scores: ArrayLike, costs: ArrayLike) -> tuple[NDArray[np.int64], float]:
        """Choose ``argmax_a scores[i, a] - lam * costs[i, a]`` and reserve the chosen costs.

        Parameters
        ----------
        scores : array-like of shape (n_queries, n_actions)
            Per-action utility of each query (the policy's scores).
        costs : array-like of shape (n_queries, n_actions) or (n_actions,)
            Expected cost of each action, in the budget's unit.

        Returns
        -------
        actions : ndarray of shape (n_queries,), int
            The chosen action per query (the first maximiser on ties). Each must later be
            settled with its expected cost ``costs[i, actions[i]]``.
        lam : float
            The price used, the same for the whole batch.
        """
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or 0 in s.shape:
            raise ValueError(
                "The 'scores' parameter of BudgetController.decide must be a non-empty 2-D "
                f"array (n_queries, n_actions). Got shape {s.shape} instead."
            )
        c = np.asarray(costs, dtype=np.float64)
        if c.shape not in (s.shape, s.shape[1:]):  # a cost row shared by all is used as it is
            c = np.broadcast_to(c, s.shape)
        with self._lock:
            lam = self._price()
            actions = np.argmax(s - lam * c, axis=1).astype(np.int64, copy=False)
            chosen = c[actions] if c.ndim == 1 else c[np.arange(s.shape[0]), actions]
            self._open(float(chosen.sum()), s.shape[0])
        self._notify()
        return actions, lam

    def reserve(self, expected: float) -> float:
        """Open one query at the current price without choosing among actions.

        For policies that act on the price themselves (a sequential stopping rule whose knob
        is the price): the query runs at the returned price and is settled like a decided
        one, ``settle(expected, realised)``.

        Parameters
        ----------
        expected : float
            The query's expected cost (the budget, for a rule calibrated to it).

        Returns
        -------
        float
            The price the query runs at.
        """
        _check_cost(expected, "reserve", "expected")
        with self._lock:
            lam = self._price()
            self._open(expected, 1)
        self._notify()
        return lam

    def _open(self, reserved: float, queries: int) -> None:
        """Reserve ``reserved`` for ``queries`` new queries in flight (lock held)."""
        self._reserved += reserved
        self._in_flight += queries
        self._integrate(queries)

    def settle(self, expected: float, realised: float | None) -> None:
        """Replace one query's reservation by its realised cost.

        Parameters
        ----------
        expected : float
            The cost reserved for the query by :meth:`decide`.
        realised : float or None
            What the query cost; None when it failed before any cost was incurred (it then
            does not count as a query).
        """
        if realised is not None:
            _check_cost(realised, "settle")
        with self._lock:
            self._reserved -= expected
            self._in_flight -= 1
            if not self._in_flight:
                self._reserved = 0.0
            if realised is not None:
                self._spent += realised
                self._n += 1
        self._notify()

    def charge(self, realised: float) -> None:
        """Count a query that cost ``realised`` without a decision (it failed before one)."""
        _check_cost(realised, "charge")
        with self._lock:
            self._spent += realised
            self._n += 1
        self._notify()


def _check_cost(value: float, method: str, name: str = "realised") -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"The '{name}' parameter of BudgetController.{method} must be a finite float "
            f">= 0. Got {value!r} instead."
        )


def _check_real(
    name: str, value: object, *, positive: bool = False, low: float = -math.inf
) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not math.isfinite(number) or (positive and number <= 0) or number < low:
        expected = (
            "a float in (0, inf)"
            if positive
            else ("a finite float" if math.isinf(low) else f"a float in [{low}, inf)")
        )
        raise ValueError(
            f"The '{name}' parameter of BudgetController must be {expected}. Got {value!r} instead."
        )
    return number


def _check_bound(name: str, value: object) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    if math.isnan(number):
        raise ValueError(
            f"The '{name}' parameter of BudgetController must be a float (inf allowed). "
            f"Got {value!r} instead."
        )
    return number
