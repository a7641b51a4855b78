"""The interface every runtime offers, whichever rule it runs (what the server and fleet use)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from computealloc.data.backends.base import Backend, BackendStats, Prompt, gather_or_cancel
from computealloc.serving.budget import BudgetController
from computealloc.serving.runtime.answers import RuntimeAnswer
from computealloc.serving.runtime.ledger import InFlight, Ledger

__all__ = ["AnsweringRuntime", "upstream_stats"]


class AnsweringRuntime(ABC):
    """What every runtime offers, whichever rule it runs (what the server and the fleet use).

    A runtime answers one query, several at once, or a stream; keeps a :class:`Ledger` of what
    it spent and (when its price moves online) a controller; knows its arms, its actions, its
    cost unit and budget, and the most one query can be expected to cost. Build one with
    :func:`computealloc.serving.deploy.open_runtime`.

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
        """Upstream calls per arm (the backends' :class:`~computealloc.data.backends.BackendStats`;
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


def upstream_stats(arms: Mapping[str, Backend]) -> dict[str, BackendStats]:
    """The :class:`~computealloc.data.backends.BackendStats` of every arm's backend that has
    them."""
    found = {arm: getattr(backend, "stats", None) for arm, backend in arms.items()}
    return {arm: stats for arm, stats in found.items() if isinstance(stats, BackendStats)}
