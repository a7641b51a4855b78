"""Totals shared by the worker processes of one proxy (``computealloc serve --workers N``).

Each worker process runs its own runtime and budget controller, and keeps the running mean
cost of the requests it answers at the budget; the mean over all workers is then a weighted
mean of per-worker means that each hold the budget, so it holds it too. What workers share is
only what ``/metrics`` and ``/health`` report: each worker writes its totals to one JSON file
of a common folder (atomically, a few times a second and at shutdown) and a scrape adds its
own live totals to the files of the others. A worker that died keeps its file, so what it
spent stays counted.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from computealloc.runtime import Ledger
from computealloc.table import atomic_write

__all__ = ["WorkerState", "combine", "gather", "publish"]

_PREFIX = "worker-"


@dataclass(frozen=True)
class WorkerState:
    """What one worker (or all of them, summed) has done.

    Attributes
    ----------
    ledger : Ledger
        Spend totals.
    statuses : dict of int to int
        Chat requests answered per HTTP status.
    lam : float
        The current dual price (for a sum of workers: their mean weighted by queries).
    """

    ledger: Ledger
    statuses: Mapping[int, int]
    lam: float

    def to_json(self) -> str:
        """The state as one JSON object."""
        ledger = self.ledger
        return json.dumps(
            {
                "queries": ledger.queries,
                "failed": ledger.failed,
                "samples": ledger.samples,
                "output_tokens": ledger.output_tokens,
                "prompt_tokens": ledger.prompt_tokens,
                "cost": ledger.cost,
                "actions": ledger.actions,
                "arm_samples": ledger.arm_samples,
                "arm_cost": ledger.arm_cost,
                "statuses": {str(code): n for code, n in self.statuses.items()},
                "lam": self.lam if math.isfinite(self.lam) else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerState:
        """Parse :meth:`to_json` output."""
        data = json.loads(text)
        ledger = Ledger(
            queries=int(data["queries"]),
            failed=int(data["failed"]),
            samples=int(data["samples"]),
            output_tokens=int(data["output_tokens"]),
            cost=float(data["cost"]),
            actions={str(a): int(n) for a, n in data["actions"].items()},
            prompt_tokens=int(data["prompt_tokens"]),
            arm_samples={str(a): int(n) for a, n in data["arm_samples"].items()},
            arm_cost={str(a): float(c) for a, c in data["arm_cost"].items()},
        )
        statuses = {int(code): int(n) for code, n in data["statuses"].items()}
        lam = math.nan if data["lam"] is None else float(data["lam"])
        return cls(ledger, statuses, lam)


def publish(folder: Path, state: WorkerState) -> None:
    """Write this process's state to ``folder`` (atomically)."""
    text = state.to_json()
    atomic_write(folder / f"{_PREFIX}{os.getpid()}.json", lambda fh: fh.write(text))


def gather(folder: Path, own: WorkerState) -> tuple[WorkerState, int]:
    """The totals of every worker, this one's live ``own`` state in place of its file.

    Returns
    -------
    total : WorkerState
        Summed ledgers and statuses; ``lam`` the queries-weighted mean of the workers' prices
        (their plain mean before any query).
    workers : int
        Workers counted.
    """
    mine = f"{_PREFIX}{os.getpid()}.json"
    states = [own] + [
        WorkerState.from_json(path.read_text())
        for path in sorted(folder.glob(f"{_PREFIX}*.json"))
        if path.name != mine
    ]
    return combine(states), len(states)


def combine(states: list[WorkerState]) -> WorkerState:
    """The sum of several states; ``lam`` their queries-weighted mean price (their plain mean
    before any query)."""
    actions: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    arm_samples: Counter[str] = Counter()
    arm_cost: Counter[str] = Counter()
    for state in states:
        actions.update(state.ledger.actions)
        statuses.update(state.statuses)
        arm_samples.update(state.ledger.arm_samples)
        arm_cost.update(state.ledger.arm_cost)
    ledger = Ledger(
        queries=sum(s.ledger.queries for s in states),
        failed=sum(s.ledger.failed for s in states),
        samples=sum(s.ledger.samples for s in states),
        output_tokens=sum(s.ledger.output_tokens for s in states),
        cost=sum(s.ledger.cost for s in states),
        actions=dict(actions),
        prompt_tokens=sum(s.ledger.prompt_tokens for s in states),
        arm_samples=dict(arm_samples),
        arm_cost={arm: float(cost) for arm, cost in arm_cost.items()},
    )
    priced = [s for s in states if math.isfinite(s.lam)]
    weights = [s.ledger.queries for s in priced]
    if not priced:
        lam = math.nan
    elif sum(weights):
        lam = sum(w * s.lam for w, s in zip(weights, priced, strict=True)) / sum(weights)
    else:
        lam = sum(s.lam for s in priced) / len(priced)
    return WorkerState(ledger, dict(statuses), lam)
