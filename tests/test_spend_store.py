"""Spend stores: the atomic sync, caps, leases, restarts; in process and on a real Redis."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from computealloc.serving.budget import BudgetController
from computealloc.serving.spend_store import Cap, MemoryStore, RedisStore, SpendStore, open_store
from redis_server import REDIS_SERVER, RedisServer

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server)"
)


@pytest.fixture
def redis_server(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def make_store(request, tmp_path):
    """A factory of stores sharing one backing state (one Redis server, or one MemoryStore)."""
    if request.param == "memory":
        shared = MemoryStore(lease_s=0.3)
        yield lambda: shared
        return
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    yield lambda: RedisStore(server.url, lease_s=0.3)
    server.stop()


def run(coro):
    return asyncio.run(coro)


def test_fleet_totals_are_the_sum_of_the_replicas_contributions(make_store):
    async def go():
        a, b = make_store(), make_store()
        await a.sync("acct", "A", {"c:spent": 3.0, "r:reserved": 2.0, "s:200": 1})
        result = await b.sync("acct", "B", {"c:spent": 4.5, "r:reserved": 1.0})
        assert result.applied and result.replicas == 2
        assert result.fleet == {"c:spent": 7.5, "r:reserved": 3.0, "s:200": 1.0}
        again = await a.sync("acct", "A", {"c:spent": 3.0, "r:reserved": 2.0, "s:200": 1})
        assert again.fleet == result.fleet  # a repeated sync (a lost reply) counts nothing twice
        settled = await a.sync("acct", "A", {"c:spent": 5.0, "r:reserved": 0.0})
        assert settled.fleet == {"c:spent": 9.5, "r:reserved": 1.0, "s:200": 1.0}
        assert (await b.snapshot("acct")).fleet == settled.fleet
        assert (await b.snapshot("other")).fleet == {}
        await a.aclose()
        await b.aclose()

    run(go())


def test_a_partial_sync_needs_the_version_the_store_holds(make_store):
    """Only changed fields are sent after a sync the store still holds; a store that lost or
    rolled it back answers known=False, and nothing changes."""

    async def go():
        store = make_store()
        await store.sync("acct", "A", {"c:spent": 1.0, "c:n": 1.0}, version=1)
        moved = await store.sync("acct", "A", {"c:spent": 2.0}, version=2, after=1)
        assert moved.applied and moved.fleet == {"c:spent": 2.0, "c:n": 1.0}
        stale = await store.sync("acct", "A", {"c:spent": 3.0}, version=3, after=1)
        assert not stale.known and not stale.applied
        assert (await store.snapshot("acct")).fleet == moved.fleet
        fresh = await store.sync("acct", "B", {"c:spent": 5.0}, version=9, after=8)
        assert not fresh.known  # a replica the store never saw
        await store.aclose()

    run(go())


def test_concurrent_syncs_of_many_replicas_never_lose_an_update(make_store):
    """No read-modify-write race: 8 replicas x 50 interleaved syncs sum exactly."""

    async def replica(store: SpendStore, name: str) -> float:
        spent = 0.0
        for i in range(50):
            spent += 0.5 + i % 3
            await store.sync("acct", name, {"c:spent": spent, "c:n": i + 1.0})
        return spent

    async def go():
        stores = [make_store() for _ in range(8)]
        spent = await asyncio.gather(*(replica(s, f"R{i}") for i, s in enumerate(stores)))
        fleet = (await stores[0].snapshot("acct")).fleet
        assert fleet["c:spent"] == sum(spent) and fleet["c:n"] == 8 * 50
        for store in stores:
            await store.aclose()

    run(go())


def test_a_cap_refuses_a_hold_that_would_pass_it_and_changes_nothing(make_store):
    async def go():
        store = make_store()
        cap = Cap(10.0, "p:1", "r:held:1")
        await store.sync("k", "B", {"p:1": 6.0, "r:held:1": 0.0})
        ok = await store.sync("k", "A", {"p:1": 0.0, "r:held:1": 4.0}, cap=cap)
        assert ok.applied and ok.fleet["r:held:1"] == 4.0
        refused = await store.sync("k", "A", {"p:1": 0.0, "r:held:1": 8.0}, cap=cap)
        assert not refused.applied and refused.fleet == ok.fleet
        assert (await store.snapshot("k")).fleet == {"p:1": 6.0, "r:held:1": 4.0}
        await store.aclose()

    run(go())


def test_reservations_expire_with_the_lease_spend_stays(make_store):
    async def go():
        dead, alive = make_store(), make_store()
        await dead.sync("acct", "dead", {"c:spent": 2.0, "r:reserved": 8.0, "r:in_flight": 2})
        await alive.sync("acct", "alive", {"c:spent": 1.0, "r:reserved": 1.0, "r:in_flight": 1})
        for _ in range(8):  # the live replica renews its lease, the dead one does not
            await asyncio.sleep(0.1)
            result = await alive.sync("acct", "alive", {"c:spent": 1.0, "r:reserved": 1.0})
        assert result.replicas == 1
        assert result.fleet == {"c:spent": 3.0, "r:reserved": 1.0, "r:in_flight": 1.0}
        back = await dead.sync("acct", "dead", {"c:spent": 2.0, "r:reserved": 8.0})
        assert back.fleet["r:reserved"] == 9.0  # a replica that was only slow comes back whole
        await dead.aclose()
        await alive.aclose()

    run(go())


@needs_redis
def test_a_replica_sigkilled_with_reservations_leaves_only_its_spend(redis_server):
    code = (
        "import asyncio, os, signal\n"
        "from computealloc.serving.spend_store import RedisStore\n"
        f"store = RedisStore({redis_server.url!r}, lease_s=0.5)\n"
        "asyncio.run(store.sync('acct', 'victim', {'c:spent': 5.0, 'r:reserved': 12.0}))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path("src").resolve())}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == -9

    async def go():
        store = RedisStore(redis_server.url)
        assert (await store.snapshot("acct")).fleet["r:reserved"] == 12.0
        await asyncio.sleep(0.7)
        assert (await store.snapshot("acct")).fleet == {"c:spent": 5.0, "r:reserved": 0.0}
        await store.aclose()

    run(go())


@needs_redis
def test_redis_restart_keeps_the_fleet_and_a_wiped_redis_is_reseeded(tmp_path):
    server = RedisServer(tmp_path / "a")
    wiped = RedisServer(tmp_path / "b", persist=False)
    try:

        async def go():
            for srv in (server, wiped):
                store = RedisStore(srv.url)
                await store.sync("acct", "A", {"c:spent": 4.0})
                await store.sync("acct", "B", {"c:spent": 2.0})
                srv.restart()
                with pytest.raises(ConnectionError, match="unavailable"):
                    srv.stop()
                    await store.snapshot("acct")
                srv.start()
                kept = (await store.snapshot("acct")).fleet
                assert kept == ({"c:spent": 6.0} if srv.persist else {})
                # each live replica states its totals again: nothing lost, nothing doubled
                await store.sync("acct", "A", {"c:spent": 4.5})
                result = await store.sync("acct", "B", {"c:spent": 2.0})
                assert result.fleet == {"c:spent": 6.5}
                await store.aclose()

        run(go())
    finally:
        server.stop()
        wiped.stop()


@needs_redis
def test_a_sync_takes_well_under_a_millisecond_on_loopback(redis_server):
    async def go():
        store = RedisStore(redis_server.url)
        fields = {f"a:majority@{k}": float(k) for k in (1, 2, 4, 8)} | {"c:spent": 1.0}
        await store.sync("acct", "A", fields)
        times = []
        for _ in range(200):
            start = time.perf_counter()
            await store.sync("acct", "A", fields)
            times.append(time.perf_counter() - start)
        await store.aclose()
        return sorted(times)[100]

    assert run(go()) < 0.005  # loose bound for a loaded CI box; the benchmark measures it


def test_open_store_names_a_bad_url():
    assert isinstance(open_store(None), MemoryStore)
    assert isinstance(open_store("memory://"), MemoryStore)
    with pytest.raises(ValueError, match=r"redis://HOST:PORT/DB URL\. Got 'http://x'"):
        open_store("http://x")


def test_controllers_sharing_totals_price_like_one_controller():
    """Two controllers that see each other's totals price exactly as one seeing all traffic."""
    kw = {"lam0": 0.1, "scale": 0.1, "integral": 0.0}
    one, a, b = (BudgetController(2.0, **kw) for _ in range(3))
    for i in range(40):
        cost = float(1 + i % 4)
        mine, other = (a, b) if i % 3 else (b, a)
        one.reserve(2.0)
        mine.reserve(2.0)
        other.set_others(mine.totals())
        mine.set_others(other.totals())
        one.settle(2.0, cost)
        mine.settle(2.0, cost)
        other.set_others(mine.totals())
        assert a.lam == b.lam == pytest.approx(one.lam, abs=1e-12)
    assert a.state().spent == one.state().spent and a.state().n == 40
    assert math.isclose(a.state().deficit, one.state().deficit)
