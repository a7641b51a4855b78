"""Worker totals: JSON round trip, sums over workers, the weighted price, this worker live."""

from __future__ import annotations

import fcntl
import math
import os

import pytest

from computealloc.serving.runtime import Ledger
from computealloc.serving.workers import WorkerState, gather, publish


def _state(queries: int, cost: float, lam: float, action: str = "majority@1") -> WorkerState:
    ledger = Ledger(queries, 1, 2 * queries, 10 * queries, cost, {action: queries})
    return WorkerState(ledger, {200: queries, 502: 1}, lam)


def test_json_round_trip_is_exact():
    state = _state(7, 12.5, 0.031)
    assert WorkerState.from_json(state.to_json()) == state
    unpriced = WorkerState(Ledger(), {}, math.nan)
    assert math.isnan(WorkerState.from_json(unpriced.to_json()).lam)


def _live(folder, name):
    """Hold ``name``'s lock as a live worker would (return the open handle)."""
    handle = open(folder / f"{name}.lock", "wb")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_gather_sums_every_worker_and_weights_the_price_by_queries(tmp_path):
    (tmp_path / "worker-1.json").write_text(_state(10, 30.0, 0.2, "majority@4").to_json())
    (tmp_path / "worker-2.json").write_text(_state(30, 30.0, 0.1).to_json())
    leases = [_live(tmp_path, "worker-1"), _live(tmp_path, "worker-2")]
    own = _state(0, 0.0, 0.5)
    total, workers = gather(tmp_path, own)
    for lease in leases:
        lease.close()
    assert workers == 3
    assert (total.ledger.queries, total.ledger.cost, total.ledger.samples) == (40, 60.0, 80)
    assert total.ledger.actions == {"majority@4": 10, "majority@1": 30}
    assert total.statuses == {200: 40, 502: 3}
    assert total.ledger.mean_cost == 1.5
    assert total.lam == pytest.approx((10 * 0.2 + 30 * 0.1) / 40)


def test_this_worker_counts_live_not_from_its_stale_file(tmp_path):
    publish(tmp_path, _state(5, 5.0, 0.3))
    assert (tmp_path / f"worker-{os.getpid()}.json").exists()
    total, workers = gather(tmp_path, _state(9, 9.0, 0.3))
    assert workers == 1 and total.ledger.queries == 9


def test_before_any_query_the_price_is_the_plain_mean(tmp_path):
    (tmp_path / "worker-1.json").write_text(_state(0, 0.0, 0.2).to_json())
    total, _ = gather(tmp_path, _state(0, 0.0, 0.4))
    assert total.lam == pytest.approx(0.3)
