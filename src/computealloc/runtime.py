"""Apply a fitted policy to live queries under a budget.

For each query the runtime computes the policy's features (drawing ``probe_m`` probe samples
first when the policy reads probe features), scores the actions, picks
``argmax_a score[a] - lam * cost[a]`` with the dual price ``lam`` of an online
:class:`~computealloc.budget.BudgetController`, draws the action's samples from the backend of
its model, votes, and charges what the calls really cost. Queries that arrive together (a
server under load) are decided as one batch, so feature computation is vectorised across them.
"""

from __future__ import annotations

import asyncio
import math
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.actions import Action, parse_actions
from computealloc.backends.base import (
    Backend,
    BackendError,
    BackendStats,
    Completion,
    Prompt,
    check_params,
    gather_or_cancel,
    last_user_text,
    receipt,
    sampling_params,
)
from computealloc.budget import BudgetController
from computealloc.checks import check_budget, check_feasible
from computealloc.features import PROBE_FEATURES, PROMPT_FEATURES, probe_features, prompt_features
from computealloc.kinds import Combine, get_kind, kind_names
from computealloc.policies import BasePolicy, Random, Uniform
from computealloc.samples import SampleLog
from computealloc.units import PriceLike, Pricing, pricing_of
from computealloc.voting import Vote, answer_key, answer_of, majority_vote

__all__ = [
    "AnsweringRuntime",
    "FeatureFunction",
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

#: ``features(prompts, probes)`` -> one row per prompt with the policy's feature columns.
FeatureFunction = Callable[[Sequence[str], Sequence[Sequence[Completion]]], pd.DataFrame]


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
        return _prompt_tokens(self.samples)

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
    completion the backends ``received`` for it (a :func:`~computealloc.backends.receipt`:
    replies of calls that then failed or were cancelled, replies a fallback discarded).

    A completion counts once (by identity); a backend that records nothing is charged for
    what it returned.
    """
    seen = {id(c) for c in returned}
    return [*returned, *(c for c in received if id(c) not in seen)]


def check_sampling(temperature: object, max_tokens: object, where: str) -> tuple[float, int | None]:
    """``temperature`` (a float in [0, inf)) and ``max_tokens`` (None or an int in [1, inf)),
    checked as ``collect`` checks them; a ValueError naming the parameter of ``where``."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < math.inf
    ):
        raise ValueError(
            f"The 'temperature' parameter of {where} must be a float in [0, inf). "
            f"Got {temperature!r} instead."
        )
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ValueError(
            f"The 'max_tokens' parameter of {where} must be None or an int in [1, inf). "
            f"Got {max_tokens!r} instead."
        )
    return float(temperature), max_tokens


def upstream_stats(arms: Mapping[str, Backend]) -> dict[str, BackendStats]:
    """The :class:`~computealloc.backends.BackendStats` of every arm's backend that has them."""
    found = {arm: getattr(backend, "stats", None) for arm, backend in arms.items()}
    return {arm: stats for arm, stats in found.items() if isinstance(stats, BackendStats)}


def _prompt_tokens(samples: Sequence[Completion]) -> int | None:
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


def check_prompt(prompt: object, where: str) -> str:
    """The text the policy reads of ``prompt``: ``prompt`` itself when a str, else the text of
    the last user message of the conversation; a ValueError naming ``where`` when it is empty
    or ``prompt`` is neither."""
    try:
        text = last_user_text(prompt)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        text = ""
    if not isinstance(prompt, (str, list, tuple)) or not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"The 'prompt' parameter of {where} must be a non-empty str or a conversation "
            f"whose last user message has text. Got {prompt!r:.200} instead."
        )
    return text


class AnsweringRuntime(ABC):
    """What every runtime offers, whichever rule it runs (what the server and the fleet use).

    A runtime answers one query, several at once, or a stream; keeps a :class:`Ledger` of what
    it spent and (when its price moves online) a controller; knows its arms, its actions, its
    cost unit and budget, and the most one query can be expected to cost. Build one with
    :func:`computealloc.deploy.open_runtime`.

    Attributes
    ----------
    budget : float
        Target mean cost per query, in ``cost_unit``.
    cost_unit : str
        Unit of the costs, the budget and the ledger.
    actions : tuple of str
        Action specs the runtime can take (the ledger and the metrics count them).
    controller : BudgetController or None
        The online price (None when the rule runs at a fixed setting, or until it starts).
    in_flight : InFlight
        What the queries not yet settled have received (the fleet syncs it as it arrives).
    """

    budget: float
    cost_unit: str
    actions: tuple[str, ...]
    controller: BudgetController | None
    in_flight: InFlight

    @property
    @abstractmethod
    def ledger(self) -> Ledger:
        """A snapshot of the totals spent so far."""

    @property
    @abstractmethod
    def lam(self) -> float:
        """The current price (or fixed knob) the runtime decides with."""

    @property
    @abstractmethod
    def arms(self) -> dict[str, Backend]:
        """The backend of every arm the runtime draws from."""

    @property
    @abstractmethod
    def worst_cost(self) -> float:
        """The most one query can be expected to cost, in ``cost_unit`` (held against a cap)."""

    @abstractmethod
    def describe(self) -> str:
        """One line naming the rule the runtime runs (the server's banner)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close every backend."""

    def upstream(self) -> dict[str, BackendStats]:
        """Upstream calls per arm (the backends' :class:`~computealloc.backends.BackendStats`;
        arms without counters are left out)."""
        return upstream_stats(self.arms)

    @abstractmethod
    async def answer(
        self, prompt: Prompt, *, params: Mapping[str, Any] | None = None
    ) -> RuntimeAnswer:
        """Answer one query (see the subclasses)."""

    @property
    @abstractmethod
    def request_params(self) -> dict[str, Any]:
        """The request fields the runtime sets on every backend call (temperature, ...)."""

    async def answer_many(self, prompts: Sequence[str]) -> list[RuntimeAnswer]:
        """Answer several queries concurrently; order is kept."""
        return await gather_or_cancel(self.answer(p) for p in prompts)

    def run_stream(self, prompts: Sequence[str], *, concurrency: int = 1) -> list[RuntimeAnswer]:
        """Answer a stream of prompts in order, at most ``concurrency`` in flight (blocking).

        For offline replays: with ``concurrency=1`` each query is decided after the previous
        one was charged, as in a sequential stream.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(
                f"The 'concurrency' parameter of {type(self).__name__}.run_stream must be an int "
                f"in [1, inf). Got {concurrency!r} instead."
            )

        async def stream() -> list[RuntimeAnswer]:
            slots = asyncio.Semaphore(concurrency)

            async def one(prompt: str) -> RuntimeAnswer:
                async with slots:
                    return await self.answer(prompt)

            return await gather_or_cancel(one(p) for p in prompts)

        return asyncio.run(stream())


@dataclass(frozen=True)
class Ledger:
    """Totals of everything the runtime has spent.

    Attributes
    ----------
    queries : int
        Queries charged (answered, or failed after some samples were drawn).
    failed : int
        Queries that raised.
    samples : int
        Samples received from the backends.
    output_tokens : int
        Their output tokens, where the backend reported them.
    prompt_tokens : int
        Prompt tokens of the charged queries, each query's prompt counted once (as in the
        ``usage`` of the proxy's responses), where the backend reported them.
    cost : float
        Total cost in the policy's cost unit.
    actions : dict of str to int
        Answered queries per action spec.
    arm_samples, arm_cost : dict of str to int, dict of str to float
        Samples received and cost spent per arm (the model or named mode that drew them).
    """

    queries: int = 0
    failed: int = 0
    samples: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    actions: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    arm_samples: dict[str, int] = field(default_factory=dict)
    arm_cost: dict[str, float] = field(default_factory=dict)

    @property
    def mean_cost(self) -> float:
        """``cost / queries``; NaN before the first query."""
        return self.cost / self.queries if self.queries else math.nan

    def add(
        self,
        drawn: Sequence[Completion],
        cost: float,
        action: str | None,
        *,
        failed: bool,
        arm: str,
    ) -> Ledger:
        """The totals after one more query that drew ``drawn`` from ``arm`` at ``cost``.

        ``action`` is the spec of the answered query (None when it failed); a query that drew
        no sample is counted as failed only.
        """
        actions = dict(self.actions)
        if action is not None:
            actions[action] = actions.get(action, 0) + 1
        arm_samples, arm_cost = dict(self.arm_samples), dict(self.arm_cost)
        if drawn:
            arm_samples[arm] = arm_samples.get(arm, 0) + len(drawn)
            arm_cost[arm] = arm_cost.get(arm, 0.0) + cost
        return Ledger(
            queries=self.queries + (1 if drawn else 0),
            failed=self.failed + int(failed),
            samples=self.samples + len(drawn),
            output_tokens=self.output_tokens + sum(c.output_tokens or 0 for c in drawn),
            cost=self.cost + cost,
            actions=actions,
            prompt_tokens=self.prompt_tokens + (_prompt_tokens(drawn) or 0),
            arm_samples=arm_samples,
            arm_cost=arm_cost,
        )


@dataclass
class Flight:
    """The replies one query in flight has received so far, priced as they arrived.

    Attributes
    ----------
    arm : str
        The arm the query draws from now (replies are priced and counted under it).
    received : list of Completion
        Every reply received, in arrival order.
    arm_samples, arm_cost : dict of str to int, dict of str to float
        Replies and their cost per arm.
    """

    arm: str
    received: list[Completion] = field(default_factory=list)
    arm_samples: dict[str, int] = field(default_factory=dict)
    arm_cost: dict[str, float] = field(default_factory=dict)


_NOTHING = Ledger()


class InFlight:
    """Replies received by a runtime's queries in flight, counted before their queries settle.

    A runtime opens a :meth:`flight` per query, hands its :meth:`receive` to the query's
    :func:`~computealloc.backends.receipt` (called as each reply arrives), and adds the query
    to its ledger when it settles, just before the flight closes with no await between: on
    the event loop, ``ledger + totals()`` counts each reply once, from its arrival on. A fleet
    publishes :meth:`totals` with the ledger (:mod:`computealloc.fleet`), so a replica killed
    with queries in flight has synced what they had received.

    Parameters
    ----------
    price : callable
        ``price(completions, arm) -> cost`` of replies, in the runtime's cost unit.
    """

    def __init__(self, price: Callable[[list[Completion], str], float]) -> None:
        self._price = price
        self._flights: dict[int, Flight] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every reply received and every flight closed."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()

    @contextmanager
    def flight(self, arm: str) -> Iterator[Flight]:
        """One query's flight, drawing from ``arm``; closed (uncounted) when the block ends."""
        one = Flight(arm)
        with self._lock:
            self._flights[id(one)] = one
        try:
            yield one
        finally:
            with self._lock:
                del self._flights[id(one)]
            if one.received:
                self._notify()

    def receive(self, flight: Flight, completions: list[Completion]) -> None:
        """Count ``completions``, just received by ``flight``'s query."""
        cost = self._price(completions, flight.arm)
        with self._lock:
            arm = flight.arm
            flight.received.extend(completions)
            flight.arm_samples[arm] = flight.arm_samples.get(arm, 0) + len(completions)
            flight.arm_cost[arm] = flight.arm_cost.get(arm, 0.0) + cost
        self._notify()

    def totals(self) -> Ledger:
        """What the queries in flight received, as a ledger: ``queries`` counts those with a
        reply; ``failed`` and ``actions`` are empty."""
        with self._lock:
            flights = [
                (list(f.received), dict(f.arm_samples), dict(f.arm_cost))
                for f in self._flights.values()
                if f.received
            ]
        if not flights:
            return _NOTHING
        arm_samples: Counter[str] = Counter()
        arm_cost: dict[str, float] = {}
        for _, samples, costs in flights:
            arm_samples.update(samples)
            for arm, cost in costs.items():
                arm_cost[arm] = arm_cost.get(arm, 0.0) + cost
        return Ledger(
            queries=len(flights),
            samples=sum(len(received) for received, _, _ in flights),
            output_tokens=sum(c.output_tokens or 0 for received, _, _ in flights for c in received),
            cost=sum(arm_cost.values()),
            prompt_tokens=sum(_prompt_tokens(received) or 0 for received, _, _ in flights),
            arm_samples=dict(arm_samples),
            arm_cost=arm_cost,
        )


@dataclass(frozen=True)
class _Plan:
    """How to execute one action: draw ``k`` samples of ``arm`` from ``backend``, combine."""

    spec: str
    k: int
    arm: str
    backend: Backend
    combine: Combine


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
        :func:`computealloc.features.build_features`); they are reused in the vote and
        charged once, so majority@K costs ``max(K, m)`` samples. By default the policy's
        ``probe_m_`` (set by :func:`computealloc.fit.fit_policy` and saved with the policy),
        else 0.
    features : callable, optional
        ``features(prompts, probes) -> DataFrame`` with the policy's feature columns, one row
        per prompt. By default :func:`~computealloc.features.prompt_features` plus, with
        ``probe_m``, :func:`~computealloc.features.probe_features` of the probes.
    prices : mapping of str to float or str, optional
        Price per arm (:mod:`computealloc.units`). By default the prices the policy was fitted
        with (``prices_``); given, they must equal those (a policy fitted without prices, e.g.
        one saved before prices were recorded, takes them as given). A ``"usd"`` policy needs
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
    :meth:`~computealloc.units.Pricing.completion_cost` with its arm's price (``"tokens"`` and
    ``"usd"`` need the backend to report output tokens, else the query is an error;
    ``"chars"`` counts the characters of the text). Every reply the backends received for the
    query is charged (:func:`charged`), including those of calls that then failed, were
    cancelled (a request deadline) or were discarded by a fallback; a query that fails after
    its probes were drawn is charged for the probes. An attempt that timed out or failed before
    its reply came back is not charged, even if the server billed for it.

    Policies whose decision reads no feature (:class:`~computealloc.policies.Uniform`, or any
    policy with a single action) skip feature computation and are scored once.
    :class:`~computealloc.policies.Random` has no per-action scores and cannot be run.
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
        _check_policy(policy)
        self.policy = policy
        self.actions: tuple[str, ...] = tuple(policy.actions_)
        self.cost_unit = str(policy.cost_unit_)
        self.budget = _check_budget(budget, np.asarray(policy.costs_, dtype=np.float64), policy)
        self.probe_m = _check_probe_m(
            getattr(policy, "probe_m_", 0) if probe_m is None else probe_m
        )
        parsed = parse_actions(self.actions)
        self._plans = _plans(parsed, backends, _single_arm(policy))
        self._probe_plan = _probe_plan(self._plans, self.probe_m)
        self.pricing = _pricing(policy, prices, self._plans)
        self._costs = np.asarray(policy.costs_, dtype=np.float64)
        self._features = _feature_function(policy, features, self.probe_m)
        _check_controller(controller, self.budget)
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
            When a backend call fails for good (:class:`~computealloc.backends.UnknownPromptError`
            for a prompt a replay backend does not know). The controller and the ledger stay
            consistent: a failed query is charged for the samples it received, nothing more.
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
            X = _select(frame, names, n_rows)
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
        plan: _Plan | None,
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


# --- construction helpers ---------------------------------------------------------------------


def _check_policy(policy: object) -> None:
    if not isinstance(policy, BasePolicy):
        raise TypeError(
            "The 'policy' parameter of Runtime must be a fitted BasePolicy. "
            f"Got {type(policy).__name__} instead."
        )
    policy.check_fitted()
    if isinstance(policy, Random):
        raise ValueError(
            "The Random policy has no per-action scores, so the runtime cannot price its "
            "actions; serve a score-based policy (Uniform, LengthHeuristic, Imitation, Value)."
        )


def _check_budget(budget: object, costs: NDArray[np.float64], policy: BasePolicy) -> float:
    value = check_budget(budget, "Runtime")
    cheapest = int(np.argmin(costs))
    check_feasible(
        value, float(costs[cheapest]), "Runtime", f"action {policy.actions_[cheapest]!r}"
    )
    return value


def _check_controller(controller: object, budget: float) -> None:
    if controller is None:
        return
    if not isinstance(controller, BudgetController) or controller.budget != budget:
        shown = controller.budget if isinstance(controller, BudgetController) else controller
        raise ValueError(
            f"The 'controller' parameter of Runtime must be a BudgetController for the "
            f"budget {budget:g}. Got {shown!r} instead."
        )


def _check_probe_m(probe_m: object) -> int:
    if isinstance(probe_m, bool) or not isinstance(probe_m, int) or probe_m < 0:
        raise ValueError(
            f"The 'probe_m' parameter of Runtime must be an int in [0, inf). Got {probe_m!r} "
            "instead."
        )
    return probe_m


def _single_arm(policy: BasePolicy) -> str | None:
    """The arm of a policy fitted on one priced model, which its unprefixed actions draw."""
    prices = getattr(policy, "prices_", {})
    return next(iter(prices)) if len(prices) == 1 else None


def _plans(
    actions: tuple[Action, ...],
    backends: Backend | Mapping[str, Backend],
    single_arm: str | None = None,
) -> list[_Plan]:
    """The backend of every action: by model prefix, or the only backend for unprefixed ones.

    An action's arm is its model prefix; an unprefixed action's is ``single_arm`` (the
    priced model of a one-model policy) or else its backend's model.
    """
    mapping = dict(backends) if isinstance(backends, Mapping) else {backends.model: backends}
    if not mapping:
        raise ValueError("The 'backends' parameter of Runtime must hold at least one backend.")
    plans = []
    for action in actions:
        kind = get_kind(action.kind)
        if kind.combine is None:
            live = [k for k in kind_names() if get_kind(k).combine is not None]
            raise ValueError(
                f"The runtime cannot execute the action {action.spec!r} live: "
                f"{kind.live_reason}. Kinds that run live: {', '.join(live)}."
            )
        if action.model is None and len(mapping) != 1:
            raise ValueError(
                f"Action {action.spec!r} has no model prefix, but {len(mapping)} backends were "
                f"given ({', '.join(mapping)}); pass a single backend."
            )
        backend = next(iter(mapping.values())) if action.model is None else None
        if action.model is not None:
            backend = mapping.get(action.model)
        if backend is None:
            raise ValueError(
                f"Action {action.spec!r} routes to model {action.model!r}, but no backend serves "
                f"it; backends were given for: {', '.join(mapping)}."
            )
        arm = action.model or single_arm or backend.model
        plans.append(_Plan(action.spec, kind.draws(action.k), arm, backend, kind.combine))
    return plans


def _probe_plan(plans: list[_Plan], probe_m: int) -> _Plan | None:
    if not probe_m:
        return None
    backends = {id(p.backend): p.backend for p in plans}
    if len(backends) != 1:
        raise ValueError(
            "Probe features need a policy whose actions all use one model (the probes are "
            f"reused in its vote). Got actions on {len(backends)} backends."
        )
    return plans[0]


def _pricing(
    policy: BasePolicy, prices: Mapping[str, PriceLike] | None, plans: list[_Plan]
) -> Pricing:
    """The policy's pricing, checked against ``prices`` and priced for every arm planned."""
    fitted = Pricing.parse(policy.cost_unit_, getattr(policy, "prices_", {}), where="prices_")
    if prices is not None:
        given = pricing_of(fitted.unit, prices, "Runtime")
        if fitted.prices and not given.same_as(fitted):
            raise ValueError(
                f"The prices given ({given.describe()}) differ from the prices the policy was "
                f"fitted with ({fitted.describe()}); drop them to use the policy's, or fit the "
                "policy again with the new prices."
            )
        fitted = given
    fitted.check_arms(
        dict.fromkeys(p.arm for p in plans), where="The 'prices' parameter of Runtime"
    )
    return fitted


def _feature_function(
    policy: BasePolicy, features: FeatureFunction | None, probe_m: int
) -> FeatureFunction | None:
    """The function computing the policy's features; None when its decision reads none."""
    if features is not None:
        if not callable(features):
            raise TypeError(
                "The 'features' parameter of Runtime must be callable as "
                f"features(prompts, probes). Got {type(features).__name__} instead."
            )
        return features
    if isinstance(policy, Uniform) or len(policy.actions_) == 1:
        return None
    names = getattr(policy, "feature_names_in_", None)
    if names is None:
        raise ValueError(
            "The policy was fitted without feature names, so the runtime cannot compute its "
            "features; fit it on a DataFrame of named features or pass `features`."
        )
    probe_names = [str(n) for n in names if str(n) in PROBE_FEATURES]
    if probe_names and not probe_m:
        raise ValueError(
            f"The policy reads probe features ({', '.join(probe_names)}); pass probe_m, the "
            "number of probe samples per query it was fitted with."
        )
    known = set(PROMPT_FEATURES) | set(PROBE_FEATURES)
    unknown = [str(n) for n in names if str(n) not in known]
    if unknown:
        raise ValueError(
            f"The runtime computes prompt and probe features only; the policy also reads "
            f"{', '.join(unknown[:5])}. Pass `features` to compute them."
        )

    def live(prompts: Sequence[str], probes: Sequence[Sequence[Completion]]) -> pd.DataFrame:
        return live_features(prompts, probes, probe_m)

    return live


def live_features(
    prompts: Sequence[str], probes: Sequence[Sequence[Completion]], probe_m: int
) -> pd.DataFrame:
    """Prompt features and, with ``probe_m``, probe features of live samples.

    Parameters
    ----------
    prompts : sequence of str, length n_queries
        Query texts.
    probes : sequence of sequences of Completion, length n_queries
        The probe samples drawn for each query.
    probe_m : int
        Probes per query (0: prompt features only).

    Returns
    -------
    DataFrame of shape (n_queries, n_features)
        The columns of :func:`~computealloc.features.prompt_features`, then those of
        :func:`~computealloc.features.probe_features` computed on the probes exactly as on a
        logged sample (answers of replayed samples are the logged ones; response lengths are
        the texts' lengths).
    """
    frame = prompt_features(list(prompts))
    if not probe_m:
        return frame
    return pd.concat([frame, _probe_frame(probes, probe_m)], axis=1)


def _probe_frame(probes: Sequence[Sequence[Completion]], probe_m: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = [
        {
            "query_id": f"q{i}",
            "sample_idx": j,
            "model": "live",
            "answer": answer_of(c),
            "tokens": math.nan if c.output_tokens is None else float(c.output_tokens),
            "response": c.text,
            "score": math.nan,
        }
        for i, batch in enumerate(probes)
        for j, c in enumerate(batch)
    ]
    ids = [f"q{i}" for i in range(len(probes))]
    samples = pd.DataFrame(rows, columns=list(_PROBE_COLUMNS))
    samples["answer"] = samples["answer"].astype(object)
    log = SampleLog(samples, pd.DataFrame({"query_id": ids}), "<live probes>")
    found = probe_features(log, probe_m).drop(columns="probe_samples")
    return found.reset_index(drop=True)


_PROBE_COLUMNS = ("query_id", "sample_idx", "model", "answer", "tokens", "response", "score")


def _select(frame: object, names: object, n_rows: int) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame) or len(frame) != n_rows:
        raise ValueError(
            f"The runtime's feature function must return a DataFrame with {n_rows} rows. "
            f"Got {type(frame).__name__}"
            + (f" with {len(frame)} rows." if isinstance(frame, pd.DataFrame) else ".")
        )
    if names is None:
        return frame
    wanted = [str(n) for n in names]  # type: ignore[attr-defined]
    missing = [n for n in wanted if n not in frame.columns]
    if missing:
        raise ValueError(
            f"The policy reads features the live samples do not provide: {', '.join(missing)}."
        )
    return frame[wanted]
