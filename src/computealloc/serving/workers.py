"""Totals shared by the worker processes of one proxy (``computealloc serve --workers N``).

Each worker process runs its own runtime and budget controller, and keeps the running mean
cost of the requests it answers at the budget; the mean over all workers is then a weighted
mean of per-worker means that each hold the budget, so it holds it too. What workers share is
only what ``/metrics`` and ``/health`` report: each worker writes its totals to one JSON file
of a common folder (atomically, a few times a second and at shutdown) and a scrape adds its
own live totals to the files of the others. A worker that died keeps its file, so what it
spent stays counted; it is not counted as a worker, though: each live worker holds an
exclusive lock (``fcntl.flock``) on a lock file of its own, which the kernel releases when the
process dies, however it dies (SIGKILL included), so a restarted worker replaces it in the
count.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from computealloc.files import atomic_write
from computealloc.serving.runtime import Ledger

__all__ = ["WorkerState", "alive", "combine", "gather", "hold_lease", "publish"]

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
    upstream : dict of str to dict of str to int
        Upstream calls (HTTP attempts, retries included) per arm and outcome (``"ok"``,
        ``"timeout"``, ``"http_503"``, ...).
    retries : dict of str to int
        Upstream attempts retried, per arm.
    """

    ledger: Ledger
    statuses: Mapping[int, int]
    lam: float
    upstream: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    retries: Mapping[str, int] = field(default_factory=dict)

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
                "upstream": {arm: dict(outcomes) for arm, outcomes in self.upstream.items()},
                "retries": dict(self.retries),
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
        upstream = {
            str(arm): {str(o): int(n) for o, n in outcomes.items()}
            for arm, outcomes in data.get("upstream", {}).items()
        }
        retries = {str(arm): int(n) for arm, n in data.get("retries", {}).items()}
        return cls(ledger, statuses, lam, upstream, retries)


#: The lock file this process holds in each folder it publishes to (open while it lives).
_LEASES: dict[Path, IO[bytes]] = {}


def publish(folder: Path, state: WorkerState) -> None:
    """Write this process's state to ``folder`` (atomically); hold its liveness lock there."""
    hold_lease(folder)
    text = state.to_json()
    atomic_write(folder / f"{_PREFIX}{os.getpid()}.json", lambda fh: fh.write(text))


def hold_lease(folder: Path) -> None:
    """Lock this process's lock file in ``folder`` for as long as the process lives."""
    folder = Path(folder)
    if folder in _LEASES:
        return
    handle = open(folder / f"{_PREFIX}{os.getpid()}.lock", "wb")  # noqa: SIM115 - held open
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _LEASES[folder] = handle


def alive(state_file: Path) -> bool:
    """Whether the worker that writes ``state_file`` still holds its lock (is alive)."""
    lock = state_file.with_suffix(".lock")
    try:
        handle = open(lock, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def gather(folder: Path, own: WorkerState) -> tuple[WorkerState, int]:
    """The totals of every worker, this one's live ``own`` state in place of its file.

    Returns
    -------
    total : WorkerState
        Summed ledgers and statuses; ``lam`` the queries-weighted mean of the workers' prices
        (their plain mean before any query).
    workers : int
        Live workers: this one and those whose lock is held (:func:`alive`). A dead worker's
        totals are summed (what it spent stays spent) but it is not counted.
    """
    mine = f"{_PREFIX}{os.getpid()}.json"
    others = [path for path in sorted(folder.glob(f"{_PREFIX}*.json")) if path.name != mine]
    states = [own] + [WorkerState.from_json(path.read_text()) for path in others]
    return combine(states), 1 + sum(alive(path) for path in others)


def combine(states: list[WorkerState]) -> WorkerState:
    """The sum of several states; ``lam`` their queries-weighted mean price (their plain mean
    before any query)."""
    actions: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    arm_samples: Counter[str] = Counter()
    arm_cost: Counter[str] = Counter()
    upstream: dict[str, Counter[str]] = {}
    retries: Counter[str] = Counter()
    for state in states:
        actions.update(state.ledger.actions)
        statuses.update(state.statuses)
        arm_samples.update(state.ledger.arm_samples)
        arm_cost.update(state.ledger.arm_cost)
        retries.update(state.retries)
        for arm, outcomes in state.upstream.items():
            upstream.setdefault(arm, Counter()).update(outcomes)
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
    calls = {arm: dict(outcomes) for arm, outcomes in upstream.items()}
    return WorkerState(ledger, dict(statuses), lam, calls, dict(retries))
