"""Readiness probes of the proxy's backends (``/readyz``, ``/health``) and its Prometheus
metrics (``/metrics``), read from the runtime's totals at scrape time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from computealloc.data.backends import Backend
from computealloc.serving.fleet import Fleet
from computealloc.serving.server.schemas import ServedRuntime
from computealloc.serving.workers import WorkerState

#: Seconds a readiness probe of a backend (``GET /models``) may take, and a result is reused.
_PROBE_TIMEOUT_S = 2.0
_PROBE_CACHE_S = 5.0


# --- metrics ------------------------------------------------------------------------------------


class RuntimeCollector(Collector):
    """Prometheus metrics read from the runtime's totals (of every worker) at scrape time."""

    def __init__(
        self,
        runtime: ServedRuntime,
        totals: Callable[[], tuple[WorkerState, int]],
        fleet: Fleet | None = None,
    ) -> None:
        self.runtime = runtime
        self.totals = totals
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        state, workers = self.totals()
        ledger = state.ledger
        requests = CounterMetricFamily(
            "computealloc_requests", "Chat completion requests by HTTP status.", labels=["code"]
        )
        for code, count in sorted(state.statuses.items()):
            requests.add_metric([str(code)], count)
        yield requests
        totals = (
            (
                "queries",
                "Queries charged (answered, or failed after drawing samples).",
                ledger.queries,
            ),
            ("failed_queries", "Queries that failed.", ledger.failed),
            ("samples", "Samples drawn from the backends.", ledger.samples),
            ("output_tokens", "Output tokens of the samples drawn.", ledger.output_tokens),
            (
                "prompt_tokens",
                "Prompt tokens of the charged queries (one request's each, as in usage).",
                ledger.prompt_tokens,
            ),
            ("cost", f"Cost spent, in {self.runtime.cost_unit}.", ledger.cost),
        )
        for name, text, value in totals:
            yield CounterMetricFamily(f"computealloc_{name}", text, value=value)
        actions = CounterMetricFamily(
            "computealloc_actions", "Answered queries per action.", labels=["action"]
        )
        for action in self.runtime.actions:
            actions.add_metric([action], ledger.actions.get(action, 0))
        yield actions
        arm_samples = CounterMetricFamily(
            "computealloc_arm_samples", "Samples drawn per arm.", labels=["arm"]
        )
        arm_cost = CounterMetricFamily(
            "computealloc_arm_cost",
            f"Cost spent per arm, in {self.runtime.cost_unit}.",
            labels=["arm"],
        )
        for arm in sorted(ledger.arm_samples):
            arm_samples.add_metric([arm], ledger.arm_samples[arm])
            arm_cost.add_metric([arm], ledger.arm_cost[arm])
        yield arm_samples
        yield arm_cost
        calls = CounterMetricFamily(
            "computealloc_upstream_requests",
            "Upstream calls (HTTP attempts, retries included) per arm and outcome.",
            labels=["arm", "outcome"],
        )
        for arm, outcomes in sorted(state.upstream.items()):
            for outcome, count in sorted(outcomes.items()):
                calls.add_metric([arm, outcome], count)
        yield calls
        retries = CounterMetricFamily(
            "computealloc_upstream_retries", "Upstream attempts retried per arm.", labels=["arm"]
        )
        for arm in sorted(state.upstream):
            retries.add_metric([arm], state.retries.get(arm, 0))
        yield retries
        gauges = (
            ("mean_cost", "Running mean cost per charged query.", ledger.mean_cost),
            ("lam", "Current dual price of cost (queries-weighted over workers).", state.lam),
            (
                "budget",
                f"Target mean cost per query, in {self.runtime.cost_unit}.",
                self.runtime.budget,
            ),
            ("workers", "Worker processes (replicas) whose totals are reported.", workers),
        )
        for name, text, value in gauges:
            yield GaugeMetricFamily(f"computealloc_{name}", text, value=value)
        if self.fleet is not None:
            yield from self.fleet.metrics()


# --- readiness ----------------------------------------------------------------------------------


class Readiness:
    """Whether each arm's backend answers (and the spend store is up), probed at most every
    :data:`_PROBE_CACHE_S` seconds; concurrent checks share one probe."""

    def __init__(self, runtime: ServedRuntime, fleet: Fleet | None) -> None:
        self.runtime = runtime
        self.fleet = fleet
        self._lock = asyncio.Lock()
        self._at = -math.inf
        self._last: dict[str, str] = {}

    async def check(self) -> dict[str, str]:
        """``"ok"`` or what is wrong, per arm (and ``"spend_store"`` with a fleet)."""
        async with self._lock:
            if time.monotonic() - self._at >= _PROBE_CACHE_S:
                arms = self.runtime.arms
                found = await asyncio.gather(*(_probe(b) for b in arms.values()))
                self._last = dict(zip(arms, found, strict=True))
                self._at = time.monotonic()
            checked = dict(self._last)
        if self.fleet is not None:
            checked["spend_store"] = "ok" if self.fleet.up else "the spend store is down"
        return checked


async def _probe(backend: Backend) -> str:
    """``"ok"`` when ``backend`` answers (one without a ``probe`` method always does)."""
    probe = getattr(backend, "probe", None)
    if probe is None:
        return "ok"
    why = await probe(_PROBE_TIMEOUT_S)
    return "ok" if why is None else str(why)
