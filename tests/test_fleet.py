"""A fleet of proxy replicas on one spend store: shared budget and totals, per-key budgets and
caps, Redis going away and coming back, a replica SIGKILLed with queries in flight.

Replicas are real uvicorn servers (threads, and a separate process for the kill); the store is
a real ``redis-server`` started per test (skipped when it is not installed) or the in-process
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from typer.testing import CliRunner  # noqa: E402

from computealloc.cli import app as cli  # noqa: E402
from computealloc.data.backends import ReplayBackend  # noqa: E402
from computealloc.fitting.persist import save_policy  # noqa: E402
from computealloc.fitting.sequential import BetaRule  # noqa: E402
from computealloc.serving.fleet import AccountLink, KeyBudget, KeysFileError, read_keys, state_of  # noqa: E402
from computealloc.serving.runtime import Runtime  # noqa: E402
from computealloc.serving.sequential_runtime import SequentialRuntime  # noqa: E402
from computealloc.serving.server import create_app  # noqa: E402
from computealloc.serving.spend_store import MemoryStore, RedisStore  # noqa: E402
from fake_openai_server import make_app, running  # noqa: E402
from redis_server import REDIS_SERVER, RedisServer, free_port  # noqa: E402
from test_runtime import fit_value, synthetic_log  # noqa: E402

BUDGET = 3.0
MAIN = "main-key"


@pytest.fixture(scope="module")
def log():
    return synthetic_log(60, 8)


@pytest.fixture(scope="module")
def policy(log):
    return fit_value(log, BUDGET, actions="majority@1,majority@2,majority@4")


@pytest.fixture
def redis_server(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis", persist=False)
    yield server
    server.stop()


def _replicas(stack: ExitStack, n: int, policy, log, **app_kwargs) -> list[tuple[str, Runtime]]:
    """``n`` proxies (uvicorn threads, lifespan on) on their own runtimes; base URL, runtime."""
    out = []
    for seed in range(n):
        runtime = Runtime(policy, ReplayBackend(log, seed=seed), budget=BUDGET)
        kwargs = dict(app_kwargs)
        if "store_url" in kwargs:
            kwargs["store"] = RedisStore(kwargs.pop("store_url"))
        app = create_app(runtime, api_key=MAIN, **kwargs)
        url = stack.enter_context(running(app, lifespan="on")).removesuffix("/v1")
        out.append((url, runtime))
    return out


def _ask(base: str, prompt: str, key: str = MAIN) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
    return httpx.post(
        f"{base}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _metrics(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics").text
    found = re.findall(r"^(computealloc_\S+) (\S+)$", text, flags=re.M)
    return {name: float(value) for name, value in found}


def test_replicas_on_one_redis_hold_one_budget_and_report_the_same_totals(
    redis_server, policy, log
):
    prompts = list(log.queries["prompt"])
    with ExitStack() as stack:
        replicas = _replicas(
            stack, 3, policy, log, store_url=redis_server.url, budget_name="fleet-a"
        )
        for i in range(90):  # uneven: the first replica gets half of the traffic
            base = replicas[0 if i % 2 else 1 + i % 4 // 2][0]
            assert _ask(base, prompts[i % len(prompts)]).status_code == 200
        ledgers = [rt.ledger for _, rt in replicas]
        seen = [_metrics(base) for base, _ in replicas]
        seen = [_metrics(base) for base, _ in replicas]  # every replica synced the last settle
        health = [httpx.get(f"{base}/health").json() for base, _ in replicas]
        lams = [rt.lam for _, rt in replicas]
    assert sum(ledger.queries for ledger in ledgers) == 90
    for metrics, ledger in zip(seen, ledgers, strict=True):
        assert metrics["computealloc_queries_total"] == 90
        assert metrics["computealloc_cost_total"] == sum(x.cost for x in ledgers)
        assert metrics["computealloc_samples_total"] == sum(x.samples for x in ledgers)
        assert metrics['computealloc_requests_total{code="200"}'] == 90
        assert metrics["computealloc_workers"] == 3
        assert metrics["computealloc_replica_queries_total"] == ledger.queries
        assert metrics["computealloc_store_up"] == 1
    assert [h["replica"]["queries"] for h in health] == [x.queries for x in ledgers]
    assert all(h["store"]["control"] == "fleet" and h["status"] == "ok" for h in health)
    assert lams[0] == pytest.approx(lams[1], abs=1e-12) == pytest.approx(lams[2], abs=1e-12)


def test_the_fleet_price_is_the_price_of_the_pooled_spend(redis_server, policy, log):
    """A replica that only sees cheap traffic prices the fleet's overspend, not its own."""
    prompts = list(log.queries["prompt"])
    with ExitStack() as stack:
        (base, runtime), (_, idle) = _replicas(
            stack, 2, policy, log, store_url=redis_server.url, budget_name="fleet-b"
        )
        for prompt in prompts[:30]:
            assert _ask(base, prompt).status_code == 200
        httpx.get(f"{base}/metrics")
        idle_lam = httpx.get(f"{base}/health").json()["lam"]
        assert idle.controller is not None and runtime.controller is not None
        for _ in range(40):  # the idle replica polls the store every 0.5 s
            if idle.controller.state().n == 30:
                break
            time.sleep(0.05)
        assert idle.controller.state().n == 30 and idle.ledger.queries == 0
        assert idle.lam == pytest.approx(runtime.lam, abs=1e-12) == pytest.approx(idle_lam)


def test_per_key_budgets_and_a_hard_cap_answered_429_without_partial_charge(policy, log):
    keys = [
        KeyBudget("team-a", "sk-a", 2.0, cap=20.0),
        KeyBudget("team-b", "sk-b", 4.0),
    ]
    runtimes = {k.name: Runtime(policy, ReplayBackend(log), budget=k.budget) for k in keys}
    main = Runtime(policy, ReplayBackend(log), budget=BUDGET)
    app = create_app(main, api_key=MAIN, keys=[(k, runtimes[k.name]) for k in keys])
    prompts = list(log.queries["prompt"])
    statuses, refused = [], None
    with running(app, lifespan="on") as url:
        base = url.removesuffix("/v1")
        for i in range(30):
            reply = _ask(base, prompts[i], "sk-a")
            statuses.append(reply.status_code)
            if reply.status_code == 429 and refused is None:
                refused = reply.json()
                spent = runtimes["team-a"].ledger.cost
                assert _ask(base, prompts[i + 1], "sk-a").status_code == 429
                assert runtimes["team-a"].ledger.cost == spent  # refused: nothing charged
        for i in range(10):
            assert _ask(base, prompts[i], "sk-b").status_code == 200
        assert _ask(base, prompts[0], MAIN).status_code == 200
        assert _ask(base, prompts[0], "sk-unknown").status_code == 401
        metrics = _metrics(base)
        text = httpx.get(f"{base}/metrics").text
        health = httpx.get(f"{base}/health").json()
    assert 200 in statuses and 429 in statuses
    assert statuses.index(429) == statuses.count(200)  # every request after the first 429 too
    error = refused["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == 429
    assert "team-a" in error["message"] and "cap of 20" in error["message"]
    spent = runtimes["team-a"].ledger.cost
    assert spent <= 20.0 and spent + max(policy.costs_) > 20.0  # the cap is spent, never passed
    assert metrics['computealloc_key_cost_total{key="team-a"}'] == spent
    assert metrics['computealloc_key_period_cost{key="team-a"}'] == spent
    assert metrics['computealloc_key_refused_total{key="team-a"}'] == statuses.count(429) + 1
    assert metrics['computealloc_key_queries_total{key="team-b"}'] == 10
    assert metrics['computealloc_key_budget{key="team-b"}'] == 4.0
    assert metrics["computealloc_queries_total"] == sum(
        rt.ledger.queries for rt in (main, *runtimes.values())
    )
    assert health["keys"]["team-a"]["cap"] == 20.0 and health["keys"]["team-b"]["cap"] is None
    assert "sk-a" not in json.dumps(health) and "sk-a" not in text


def test_a_cap_holds_across_replicas(redis_server, policy, log):
    key = KeyBudget("team-a", "sk-a", 2.0, cap=15.0)
    prompts = list(log.queries["prompt"])
    with ExitStack() as stack:
        bases, runtimes = [], []
        for seed in range(2):
            runtime = Runtime(policy, ReplayBackend(log, seed=seed), budget=key.budget)
            main = Runtime(policy, ReplayBackend(log), budget=BUDGET)
            app = create_app(
                main,
                api_key=MAIN,
                store=RedisStore(redis_server.url),
                budget_name="capped",
                keys=[(key, runtime)],
            )
            bases.append(stack.enter_context(running(app, lifespan="on")).removesuffix("/v1"))
            runtimes.append(runtime)
        codes = [_ask(bases[i % 2], prompts[i], "sk-a").status_code for i in range(30)]
    spent = sum(rt.ledger.cost for rt in runtimes)
    assert codes.count(429) > 0 and spent <= 15.0 and spent + max(policy.costs_) > 15.0


def test_redis_down_then_back_answers_everything_and_loses_nothing(redis_server, policy, log):
    """Redis wiped by a restart mid-run: local control meanwhile, then an exact fleet ledger."""
    prompts = list(log.queries["prompt"])
    with ExitStack() as stack:
        replicas = _replicas(
            stack, 2, policy, log, store_url=redis_server.url, budget_name="faults"
        )
        codes = [_ask(replicas[i % 2][0], prompts[i]).status_code for i in range(20)]
        redis_server.stop()
        codes += [_ask(replicas[i % 2][0], prompts[i]).status_code for i in range(20, 40)]
        health = httpx.get(f"{replicas[0][0]}/health").json()
        down = _metrics(replicas[1][0])
        redis_server.start()  # empty: no persistence in this test
        codes += [_ask(replicas[i % 2][0], prompts[i]).status_code for i in range(40, 50)]
        time.sleep(0.6)  # one sync interval: every replica re-stated its totals
        after = [_metrics(base) for base, _ in replicas]
        ledgers = [rt.ledger for _, rt in replicas]
        back = httpx.get(f"{replicas[0][0]}/health").json()
    assert codes == [200] * 50
    assert health["status"] == "degraded" and health["store"]["control"] == "local"
    assert health["store"]["up"] is False and health["store"]["errors"] > 0
    assert down["computealloc_store_up"] == 0
    assert back["status"] == "ok" and back["store"]["up"] is True
    for metrics in after:
        assert metrics["computealloc_queries_total"] == 50
        assert metrics["computealloc_cost_total"] == sum(x.cost for x in ledgers)
        assert metrics["computealloc_samples_total"] == sum(x.samples for x in ledgers)
        assert metrics["computealloc_store_up"] == 1


def test_a_replica_sigkilled_in_flight_leaves_an_exact_ledger(redis_server, policy, log, tmp_path):
    """Its reservations expire with its lease; what it answered, and what its queries in
    flight had received, stays counted, once: the fleet's ledger is what the backend
    delivered."""
    save_policy(policy, tmp_path / "policy.json")
    replay, seen, delivered = ReplayBackend(log), Counter(), Counter()
    partial, release = threading.Event(), threading.Event()

    async def respond(request, n):
        """Every request answered, or (``partial``) only the first of each prompt."""
        seen[request.prompt] += 1
        if partial.is_set() and seen[request.prompt] > 1:
            while not release.is_set():  # past the kill: nobody reads the reply
                await asyncio.sleep(0.02)
            return await replay.sample(request.prompt, n)
        got = await replay.sample(request.prompt, n)
        delivered["samples"] += len(got)
        return got

    prompts = list(log.queries["prompt"])
    with ExitStack() as stack:
        stack.callback(release.set)
        backend = stack.enter_context(running(make_app(respond, n_mode="ignore")))
        (base, runtime), *_ = _replicas(
            stack, 1, policy, log, store_url=redis_server.url, budget_name="kill"
        )
        victim, victim_base = stack.enter_context(
            _serve(tmp_path, backend, redis_server.url, "kill", model="m")
        )
        answered = [_ask(victim_base, prompts[i]).json()["computealloc"] for i in range(2)]
        for i in range(4):
            assert _ask(base, prompts[i]).status_code == 200
        seen.clear()
        partial.set()  # from now on a query of k > 1 samples gets one and waits for the rest
        in_flight = [
            threading.Thread(target=lambda p=p: _try(victim_base, p)) for p in prompts[10:16]
        ]
        for thread in in_flight:
            thread.start()
        time.sleep(1.0)  # first replies in and synced; reservations in the store
        before = _snapshot(redis_server.url, "kill")
        at_kill = delivered["samples"]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        time.sleep(5.5)  # the store's lease
        after = _snapshot(redis_server.url, "kill")
        metrics = _metrics(base)
        release.set()
        for thread in in_flight:
            thread.join()
    unsettled = before["u:queries"]
    assert unsettled > 0 and before["u:samples"] == unsettled == before["r:in_flight"]
    assert after["r:in_flight"] == 0 and after["r:reserved"] == 0
    assert (after["u:queries"], after["u:samples"]) == (unsettled, unsettled)  # kept
    assert after["l:samples"] + after["u:samples"] == runtime.ledger.samples + at_kill
    assert metrics["computealloc_samples_total"] == runtime.ledger.samples + at_kill
    assert metrics["computealloc_queries_total"] == 4 + 2 + 6  # each once, settled or not
    assert metrics["computealloc_cost_total"] == after["l:cost"] + after["u:cost"]
    assert after["c:spent"] == after["l:cost"]  # the price counts settled queries
    assert sum(a["cost"] for a in answered) + runtime.ledger.cost <= after["l:cost"]


class Trickle:
    """A replayed backend that delivers the first sample of each call at once and the others
    when ``gate`` is set; ``delivered`` counts the samples it handed over."""

    model = "m"

    def __init__(self, log) -> None:
        self.replay = ReplayBackend(log)
        self.gate = asyncio.Event()
        self.delivered = 0

    async def sample(self, prompt, n, *, params=None):
        got = await self.replay.sample(prompt, 1, params=params)  # in the query's receipt
        self.delivered += 1
        if n > 1:
            await self.gate.wait()
            got += await self.replay.sample(prompt, n - 1, params=params)
            self.delivered += n - 1
        return got

    async def aclose(self) -> None:
        pass


async def _until_synced(store, runtime, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until the store holds the replies of the queries in flight (polled, not slept: a
    loaded machine may take longer than the 2 ms coalescing window)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        flying = runtime.in_flight.totals()
        fleet = (await store.snapshot("flight")).fleet
        if flying.queries > 0 and fleet.get("u:samples", 0.0) == flying.samples:
            await asyncio.sleep(0.02)  # no more replies are on their way (the gate is shut)
            if runtime.in_flight.totals() == flying:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the replies in flight were not synced in time")


def _ledger(fields: dict[str, float]):
    return state_of(fields, float("nan")).ledger


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_replies_of_queries_in_flight_are_synced_once_settled_or_not(kind, policy, log, tmp_path):
    """A replica synced with queries in flight: the store counts what they received (kept
    past the lease, as after a SIGKILL); settling them later, after a store outage too, moves
    those replies to the ledger without counting them twice."""
    if kind == "redis" and REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    prompts = list(log.queries["prompt"])

    async def scenario(redis: RedisServer | None) -> None:
        store = MemoryStore(lease_s=0.1) if redis is None else RedisStore(redis.url, lease_s=0.1)
        backend = Trickle(log)
        runtime = Runtime(policy, backend, budget=BUDGET)
        link = AccountLink(store, "flight", "replica-1", runtime, interval=0.05)
        await link.start()
        backend.gate.set()
        for prompt in prompts[:4]:
            await runtime.answer(prompt)
        backend.gate.clear()
        tasks = [asyncio.ensure_future(runtime.answer(p)) for p in prompts[4:16]]
        await _until_synced(store, runtime)  # first replies in, synced 2 ms later
        link._task.cancel()  # the replica stops syncing, as if SIGKILLed
        with contextlib.suppress(asyncio.CancelledError):
            await link._task
        await asyncio.sleep(0.2)  # its lease lapses
        dead = (await store.snapshot("flight")).fleet
        unsettled = runtime.in_flight.totals()
        assert unsettled.queries > 0 and dead["u:queries"] == unsettled.queries
        assert dead.get("r:in_flight", 0.0) == 0 and dead.get("r:reserved", 0.0) == 0
        assert (
            _ledger(dead).samples == backend.delivered == runtime.ledger.samples + unsettled.samples
        )
        assert _ledger(dead).queries == runtime.ledger.queries + unsettled.queries
        assert _ledger(dead).cost == runtime.ledger.cost + unsettled.cost

        backend.gate.set()  # the queries settle; the next sync moves their replies
        await asyncio.gather(*tasks)
        await link.sync()
        settled = (await store.snapshot("flight")).fleet
        ledger = runtime.ledger
        assert runtime.in_flight.totals().queries == 0 and settled["u:samples"] == 0
        assert _ledger(settled).samples == ledger.samples == backend.delivered
        assert (_ledger(settled).queries, _ledger(settled).cost) == (ledger.queries, ledger.cost)
        assert settled["c:spent"] == ledger.cost

        if redis is not None:  # in flight, synced; Redis dies; they settle; Redis is back
            await link.start()
            backend.gate.clear()
            tasks = [asyncio.ensure_future(runtime.answer(p)) for p in prompts[16:28]]
            await _until_synced(store, runtime)
            assert (await store.snapshot("flight")).fleet["u:samples"] > 0
            redis.stop()
            backend.gate.set()
            await asyncio.gather(*tasks)
            await link.sync()
            assert not link.up
            redis.start()  # from its append-only file: it still holds the in-flight sync
            await link.sync()
            back = (await store.snapshot("flight")).fleet
            ledger = runtime.ledger
            assert link.up and back["u:samples"] == 0 and back["u:queries"] == 0
            assert _ledger(back).samples == ledger.samples == backend.delivered
            assert (_ledger(back).queries, _ledger(back).cost) == (ledger.queries, ledger.cost)
            await link.stop()
        await store.aclose()

    if kind == "memory":
        asyncio.run(scenario(None))
    else:
        server = RedisServer(tmp_path / "redis", persist=True)
        try:
            asyncio.run(scenario(server))
        finally:
            server.stop()


def test_a_sequential_runtime_publishes_its_replies_in_flight_once(log):
    async def scenario() -> None:
        backend = Trickle(log)
        runtime = SequentialRuntime(BetaRule(), backend, budget=4.0, max_samples=7, batch_size=3)
        store = MemoryStore()
        link = AccountLink(store, "seq", "replica-1", runtime, interval=0.05)
        await link.start()
        task = asyncio.ensure_future(runtime.answer(str(log.queries["prompt"].iloc[0])))
        await asyncio.sleep(0.05)  # one sample of the first batch in, the rest held back
        mid = (await store.snapshot("seq")).fleet
        assert runtime.ledger.samples == 0 and runtime.in_flight.totals().samples == 1
        assert (mid["u:queries"], mid["u:samples"], mid["u:cost"], mid["l:samples"]) == (1, 1, 1, 0)
        backend.gate.set()
        answer = await task
        await link.stop()
        end = (await store.snapshot("seq")).fleet
        assert _ledger(end).samples == runtime.ledger.samples == backend.delivered == answer.k
        assert (_ledger(end).queries, end["u:samples"], end["u:queries"]) == (1, 0, 0)
        assert _ledger(end).cost == runtime.ledger.cost == answer.k

    asyncio.run(scenario())


def test_workers_of_one_server_are_replicas_of_the_fleet(redis_server, policy, log, tmp_path):
    save_policy(policy, tmp_path / "policy.json")
    path = tmp_path / "samples.jsonl"
    log.save(path)
    prompts = list(log.queries["prompt"])
    with _serve(tmp_path, f"replay:{path}", redis_server.url, "workers", workers=2) as (_, base):
        for prompt in prompts[:24]:  # a new connection each: both workers answer
            assert _ask(base, prompt).status_code == 200
        time.sleep(0.6)
        health = httpx.get(f"{base}/health").json()
    assert health["workers"] == 2 and health["queries"] == 24
    assert health["store"]["kind"] == "RedisStore" and health["store"]["up"] is True
    assert _snapshot(redis_server.url, "workers")["l:queries"] == 24


@contextlib.contextmanager
def _serve(tmp_path, backend: str, store: str, name: str, **kwargs):
    """:func:`serve` of ``tmp_path/policy.json`` in a child process; yield it and its URL."""
    port = free_port()
    options = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    code = (
        "from computealloc.serving.server import serve; "
        f"serve({str(tmp_path / 'policy.json')!r}, {BUDGET}, {backend!r}, port={port}, "
        f"access_log=False, spend_store={store!r}, budget_name={name!r}, "
        f"api_key={MAIN!r}{options})"
    )
    env = {**os.environ, "PYTHONPATH": str(Path("src").resolve())}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert process.poll() is None, "the proxy exited"
            assert time.monotonic() < deadline, "the proxy did not start"
        yield process, base
    finally:
        process.terminate()
        process.wait(timeout=20)


def _snapshot(url: str, account: str) -> dict[str, float]:
    async def read() -> dict[str, float]:
        store = RedisStore(url)
        try:
            return (await store.snapshot(account)).fleet
        finally:
            await store.aclose()

    return asyncio.run(read())


def _try(base: str, prompt: str) -> None:
    with contextlib.suppress(httpx.TransportError):  # the replica is killed under it
        _ask(base, prompt)


def test_keys_file_errors_name_the_file_entry_and_field(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "a", "key": "k", "budget": 2, "cap": 5}]}))
    assert read_keys(path) == [KeyBudget("a", "k", 2.0, 5.0, 86400.0)]
    cases = [
        ({"keys": []}, "non-empty 'keys' list"),
        ({"keys": [{"name": "a b", "key": "k", "budget": 1}]}, r"keys\[0\]\.name"),
        ({"keys": [{"name": "a", "budget": 1}]}, r"keys\[0\]\.key: expected"),
        ({"keys": [{"name": "a", "key": "k", "budget": -1}]}, r"keys\[0\]\.budget.*Got -1"),
        ({"keys": [{"name": "a", "key": "k", "budget": 1, "period": "year"}]}, r"\.period"),
        (
            {
                "keys": [
                    {"name": "a", "key": "k", "budget": 1},
                    {"name": "a", "key": "j", "budget": 1},
                ]
            },
            "share the name 'a'",
        ),
    ]
    for data, match in cases:
        path.write_text(json.dumps(data))
        with pytest.raises(KeysFileError, match=match):
            read_keys(path)
    path.write_text("{not json")
    with pytest.raises(KeysFileError, match="cannot read the keys file"):
        read_keys(path)


def test_serve_names_a_bad_spend_store_or_keys_file(tmp_path, policy):
    save_policy(policy, tmp_path / "policy.json")
    (tmp_path / "keys.json").write_text('{"keys": [{"name": "a", "key": "k"}]}')
    base = ["serve", "--policy", str(tmp_path / "policy.json"), "--budget", "3"]
    base += ["--backend", "replay:unused"]
    runner = CliRunner()
    bad_store = runner.invoke(cli, [*base, "--spend-store", "http://x"])
    assert bad_store.exit_code == 2 and "redis://HOST:PORT/DB" in bad_store.output
    bad_keys = runner.invoke(cli, [*base, "--keys", str(tmp_path / "keys.json")])
    assert bad_keys.exit_code == 2 and "keys[0].budget" in bad_keys.output
