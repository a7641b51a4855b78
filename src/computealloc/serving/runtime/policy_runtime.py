"""The per-query runtime of a fitted policy: decide (batched), draw, vote and charge."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.backends.base import (
    Backend,
    BackendError,
    Completion,
    Prompt,
    check_params,
    receipt,
    sampling_params,
)
from computealloc.estimation.actions import parse_actions
from computealloc.estimation.units import PriceLike
from computealloc.fitting.policies import BasePolicy
from computealloc.serving.budget import BudgetController
from computealloc.serving.runtime.answers import RuntimeAnswer, charged, voted_answer
from computealloc.serving.runtime.base import AnsweringRuntime
from computealloc.serving.runtime.checks import (
    check_controller,
    check_policy,
    check_probe_m,
    check_prompt,
    check_runtime_budget,
    check_sampling,
)
from computealloc.serving.runtime.features import FeatureFunction, feature_function, select_features
from computealloc.serving.runtime.ledger import InFlight, Ledger
from computealloc.serving.runtime.plans import (
    Plan,
    plan_actions,
    plan_pricing,
    probe_plan,
    single_priced_arm,
)

__all__ = ["Runtime"]


@dataclass
class _Pending:
    prompt: str
    probes: list[Completion]
    future: asyncio.Future[tuple[int, float, float]]


class Runtime(AnsweringRuntime):
    """Run a fitted policy on live queries, keeping the mean cost at a budget.

    Parameters
    ----------
    policy : BasePolicy
        A fitted policy whose actions are ``[MODEL/]majority@K``; its ``costs_`` (mean cost per
        action, in ``cost_unit_``) price the decisions and its ``lam_`` (if calibrated) starts
        the controller.
    backends : Backend or mapping of str to Backend
        One backend, or one per model for routing actions (``"gpt-4/majority@1"``). An action
        without a model prefix needs a single backend.
    budget : float
        Target mean cost per query, in the policy's cost unit; at least its cheapest action's
        mean cost.
    controller : BudgetController, optional
        The online price. By default one starting at the policy's ``lam_`` (0 when it has
        none), with ``scale = |lam_|`` (or, when that is 0, the median over the first decided
        batch of each query's score range per unit of cost range), the controller's default
        gain, and ``lam_min = 0`` for policies whose scores are accuracies (else unbounded).
    probe_m : int, optional
        Probe samples per query for policies fitted with probe features (the ``m`` of
        :func:`computealloc.estimation.features.build_features`); they are reused in the vote and
        charged once, so majority@K costs ``max(K, m)`` samples. By default the policy's
        ``probe_m_`` (set by :func:`computealloc.fitting.fit.fit_policy` and saved with the policy),
        else 0.
    features : callable, optional
        ``features(prompts, probes) -> DataFrame`` with the policy's feature columns, one row
        per prompt. By default :func:`~computealloc.estimation.features.prompt_features` plus, with
        ``probe_m``, :func:`~computealloc.estimation.features.probe_features` of the probes.
    prices : mapping of str to float or str, optional
        Price per arm (:mod:`computealloc.estimation.units`). By default the prices the policy was
        fitted with (``prices_``); given, they must equal those (a policy fitted without prices,
        e.g. one saved before prices were recorded, takes them as given). A ``"usd"`` policy needs
        a price for every arm.
    temperature : float
        Sampling temperature sent to the backends; use the one the training log had.
    max_tokens : int, optional
        Cap on output tokens per sample.
    random_state : int or None
        Seed of the vote's tie-breaking.

    Attributes
    ----------
    controller : BudgetController or None
        The price controller (None until the first batch when its scale comes from scores).
    actions : tuple of str
        The policy's action specs.
    cost_unit : str
        Unit of the costs and the budget.
    pricing : Pricing
        The cost unit and the price of every arm.
    in_flight : InFlight
        Replies received by queries not settled yet (counted into the ledger when they settle).

    Notes
    -----
    Realised cost: each sample a backend returned, charged by
    :meth:`~computealloc.estimation.units.Pricing.completion_cost` with its arm's price
    (``"tokens"`` and ``"usd"`` need the backend to report output tokens, else the query is an
    error; ``"chars"`` counts the characters of the text). Every reply the backends received for the
    query is charged (:func:`~computealloc.serving.runtime.charged`), including those of calls that
    then failed, were cancelled (a request deadline) or were discarded by a fallback; a query
    that fails after its probes were drawn is charged for the probes. An attempt that timed
    out or failed before its reply came back is not charged, even if the server billed for it.

    Policies whose decision reads no feature (:class:`~computealloc.fitting.policies.Uniform`, or
    any policy with a single action) skip feature computation and are scored once.
    :class:`~computealloc.fitting.policies.Random` has no per-action scores and cannot be run.
    """

    def __init__(
        self,
        policy: BasePolicy,
        backends: Backend | Mapping[str, Backend],
        *,
        budget: float,
        controller: BudgetController | None = None,
        probe_m: int | None = None,
        features: FeatureFunction | None = None,
        prices: Mapping[str, PriceLike] | None = None,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        check_policy(policy)
        self.policy = policy
        self.actions: tuple[str, ...] = tuple(policy.actions_)
        self.cost_unit = str(policy.cost_unit_)
        self.budget = check_runtime_budget(
            budget, np.asarray(policy.costs_, dtype=np.float64), policy
        )
        self.probe_m = check_probe_m(getattr(policy, "probe_m_", 0) if probe_m is None else probe_m)
        parsed = parse_actions(self.actions)
        self._plans = plan_actions(parsed, backends, single_priced_arm(policy))
        self._probe_plan = probe_plan(self._plans, self.probe_m)
        self.pricing = plan_pricing(policy, prices, self._plans)
        self._costs = np.asarray(policy.costs_, dtype=np.float64)
        self._features = feature_function(policy, features, self.probe_m)
        check_controller(controller, self.budget)
        self.controller = controller if controller is not None else self._default_controller()
        self.temperature, self.max_tokens = check_sampling(temperature, max_tokens, "Runtime")
        self._rng = np.random.default_rng(random_state)
        self._lock = threading.Lock()
        self._ledger = Ledger()
        self.in_flight = InFlight(lambda drawn, arm: self._realised(drawn, arm)[0])
        self._queue: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None
        self._fixed_scores: NDArray[np.float64] | None = None

    # --- state ----------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """A snapshot of the totals spent so far."""
        with self._lock:
            return self._ledger

    @property
    def lam(self) -> float:
        """The current dual price."""
        if self.controller is None:
            return float(getattr(self.policy, "lam_", 0.0))
        return self.controller.lam

    @property
    def arms(self) -> dict[str, Backend]:
        """The backend of every arm the policy's actions draw from."""
        return {p.arm: p.backend for p in self._plans}

    @property
    def worst_cost(self) -> float:
        """The costliest action's mean cost (the policy's ``costs_``)."""
        return float(max(self.policy.costs_))

    def describe(self) -> str:
        """``"CLASS policy, N actions"``."""
        return self.policy.describe_rule()

    async def aclose(self) -> None:
        """Close every backend."""
        for backend in {id(p.backend): p.backend for p in self._plans}.values():
            await backend.aclose()

    # --- answering ------------------------------------------------------------------------

    async def answer(
        self, prompt: Prompt, *, params: Mapping[str, Any] | None = None
    ) -> RuntimeAnswer:
        """Decide, sample, vote and charge one query.

        Parameters
        ----------
        prompt : str or sequence of chat messages
            The query text, or the whole conversation (sent whole to the backends; the
            policy's features read the text of its last user message, which is what a sample
            log's prompt holds).
        params : mapping, optional
            Request fields of this query, merged over :attr:`request_params` into every
            backend call (``max_tokens``, ``seed``, ``stop``, ...).

        Returns
        -------
        RuntimeAnswer

        Raises
        ------
        BackendError
            When a backend call fails for good
            (:class:`~computealloc.data.backends.UnknownPromptError` for a prompt a replay backend
            does not know). The controller and the ledger stay consistent: a failed query is charged
            for the samples it received, nothing more.
        """
        text = check_prompt(prompt, "Runtime.answer")
        request = {**self.request_params, **check_params(params, "Runtime.answer")}
        probes: list[Completion] = []
        probe_backend = None if self._probe_plan is None else self._probe_plan.backend
        first = (self._probe_plan or self._plans[0]).arm
        with (
            self.in_flight.flight(first) as flight,
            receipt(partial(self.in_flight.receive, flight)) as received,
        ):
            try:
                probes = await self._draw(probe_backend, prompt, self.probe_m, request)
                index, lam, expected = await self._decide(text, probes)
            except BaseException:
                self._account(charged(probes, received), None, None, failed=True)
                raise
            plan = self._plans[index]
            flight.arm = plan.arm
            reused = probes if plan.backend is probe_backend else []
            try:
                extra = await self._draw(plan.backend, prompt, plan.k - len(reused), request)
            except BaseException:
                drawn = charged(probes, received)
                self._account(drawn, expected, None, failed=True, arm=plan.arm)
                raise
            cost = self._account(charged(probes + extra, received), expected, plan, failed=False)
        return voted_answer(
            reused + extra,
            probes + extra,
            action=plan.spec,
            model=plan.backend.model,
            cost=cost,
            lam=lam,
            rng=self._rng,
            combine=plan.combine,
        )

    @property
    def request_params(self) -> dict[str, Any]:
        """``temperature`` and ``max_tokens`` (when set), sent with every backend call."""
        return sampling_params(self.temperature, self.max_tokens)

    # --- internals ------------------------------------------------------------------------

    async def _draw(
        self, backend: Backend | None, prompt: Prompt, n: int, params: dict[str, Any]
    ) -> list[Completion]:
        if backend is None or n <= 0:
            return []
        return await backend.sample(prompt, n, params=params)

    async def _decide(self, prompt: str, probes: list[Completion]) -> tuple[int, float, float]:
        """Action index, price and expected cost; batched with concurrent queries."""
        if self._features is None:
            return self._decide_batch([prompt], [probes])[0]
        future: asyncio.Future[tuple[int, float, float]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.append(_Pending(prompt, probes, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release(future.result()[2])  # decided, then cancelled before resuming
            raise

    async def _drain(self) -> None:
        """Decide every queued query as one batch (those that arrived in the same loop turn)."""
        batch, self._queue = self._queue, []
        try:
            decided = self._decide_batch([p.prompt for p in batch], [p.probes for p in batch])
        except Exception as exc:  # every waiting query gets the error
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        for pending, result in zip(batch, decided, strict=True):
            if pending.future.done():  # its query was cancelled while waiting
                self._release(result[2])
            else:
                pending.future.set_result(result)

    def _release(self, expected: float) -> None:
        """Drop the reservation of a decided query that will not run."""
        if self.controller is not None:
            self.controller.settle(expected, None)

    def _decide_batch(
        self, prompts: list[str], probes: list[list[Completion]]
    ) -> list[tuple[int, float, float]]:
        scores = self._scores(prompts, probes)
        if self.controller is None:
            self.controller = self._scaled_controller(scores)
        actions, lam = self.controller.decide(scores, self._costs)
        expected = self._costs[actions]
        return [(int(a), lam, float(e)) for a, e in zip(actions, expected, strict=True)]

    def _scores(self, prompts: list[str], probes: list[list[Completion]]) -> NDArray[np.float64]:
        if self._features is None:  # the decision reads no feature: every query scores alike
            if self._fixed_scores is None:
                self._fixed_scores = self._policy_scores(None, 1)
            return self._fixed_scores.repeat(len(prompts), axis=0)
        return self._policy_scores(self._features(prompts, probes), len(prompts))

    def _policy_scores(self, frame: pd.DataFrame | None, n_rows: int) -> NDArray[np.float64]:
        """The policy's scores of ``frame``, or of all-zero features when it is None."""
        names = getattr(self.policy, "feature_names_in_", None)
        if frame is None:
            X: pd.DataFrame | NDArray[np.float64] = np.zeros((n_rows, self.policy.n_features_in_))
            if names is not None:
                X = pd.DataFrame(X, columns=list(names))
        else:
            X = select_features(frame, names, n_rows)
        return np.asarray(self.policy.scores(X), dtype=np.float64)

    def _default_controller(self) -> BudgetController | None:
        lam0 = float(getattr(self.policy, "lam_", 0.0))
        if lam0 == 0.0:
            return None
        return BudgetController(
            self.budget, lam0, scale=abs(lam0), lam_min=min(self._lam_floor(), lam0)
        )

    def _scaled_controller(self, scores: NDArray[np.float64]) -> BudgetController:
        """Default controller of a policy without a calibrated price: scale from the scores."""
        cost_range = float(self._costs.max() - self._costs.min())
        spread = np.ptp(scores, axis=1)
        scale = float(np.median(spread)) / cost_range if cost_range > 0 else 0.0
        return BudgetController(
            self.budget, 0.0, scale=scale if scale > 0 else 1.0, lam_min=self._lam_floor()
        )

    def _lam_floor(self) -> float:
        accuracies = bool(self.policy.scores_are_accuracies)
        return 0.0 if accuracies else -math.inf

    def _realised(self, drawn: list[Completion], arm: str) -> tuple[float, bool]:
        """Cost of the samples in the policy's unit, and whether every one was priced."""
        costs = [self.pricing.completion_cost(c, arm) for c in drawn]
        return float(sum(c for c in costs if c is not None)), None not in costs

    def _account(
        self,
        drawn: list[Completion],
        expected: float | None,
        plan: Plan | None,
        *,
        failed: bool,
        arm: str | None = None,
    ) -> float:
        """Charge a query's samples to the controller and the ledger; return its cost.

        ``expected`` is the cost reserved at the decision (None when the query failed before
        it); ``plan`` the action taken (None when the query failed); ``arm`` the arm a failed
        query drew from (default: the probes' arm).
        """
        if plan is None:
            plan = self._probe_plan or self._plans[0]
            action = None
        else:
            action = plan.spec
        arm = plan.arm if arm is None else arm
        cost, priced = self._realised(drawn, arm)
        if expected is not None and self.controller is not None:
            self.controller.settle(expected, cost if drawn else None)
        elif drawn and self.controller is not None:
            self.controller.charge(cost)
        with self._lock:
            self._ledger = self._ledger.add(drawn, cost, action, failed=failed, arm=arm)
        if not priced and not failed:
            raise BackendError(
                f"The policy's cost unit is {self.cost_unit!r}, but the backend of arm "
                f"{arm!r} did not report the output tokens of a sample"
                + (" (or its prompt tokens)." if "prompt_tokens" in self.pricing.columns else "."),
                retryable=False,
            )
        return cost
