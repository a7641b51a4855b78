"""What a runtime has spent: the settled :class:`Ledger`, and the replies of queries in flight.

A runtime counts each reply in :class:`InFlight` as it arrives, and moves it to the ledger
when its query settles, so ``ledger + in_flight.totals()`` counts every reply once.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from computealloc.data.backends.base import Completion
from computealloc.serving.runtime.answers import prompt_tokens

__all__ = ["Flight", "InFlight", "Ledger"]


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
            prompt_tokens=self.prompt_tokens + (prompt_tokens(drawn) or 0),
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
    :func:`~computealloc.data.backends.receipt` (called as each reply arrives), and adds the query
    to its ledger when it settles, just before the flight closes with no await between: on
    the event loop, ``ledger + totals()`` counts each reply once, from its arrival on. A fleet
    publishes :meth:`totals` with the ledger (:mod:`computealloc.serving.fleet`), so a replica
    killed with queries in flight has synced what they had received.

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
            prompt_tokens=sum(prompt_tokens(received) or 0 for received, _, _ in flights),
            arm_samples=dict(arm_samples),
            arm_cost=arm_cost,
        )
