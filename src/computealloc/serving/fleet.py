"""A budget held by a fleet of proxy replicas through a shared spend store, and per-key budgets.

Each served budget account (the server's own budget, and one per API key of a keys file) is
an :class:`AccountLink`: it publishes the replica's contribution (controller totals, ledger,
request statuses, cap-period spend and holds) to a :class:`~computealloc.serving.spend_store.
SpendStore` 2 ms after every change (coalesced: at most one sync in flight per account, the
next one carrying everything that changed meanwhile) and at least every ``interval`` seconds,
and hands the fleet's totals back to the budget controller, whose price is then computed
from the fleet's deficit on every replica.

Faults. When the store is unreachable the replica keeps answering on local control: its
controller prices its own spend plus the fleet's last known totals, caps are checked against
that view, and :attr:`AccountLink.up` turns False (``/health``, ``computealloc_store_up``).
Every sync states the replica's totals rather than increments, so the first sync after the
store returns reconciles everything spent meanwhile, and nothing is counted twice even when a
reply was lost.

Replies are counted as they arrive. The runtime counts every reply its backends receive for a
query in flight (:class:`~computealloc.serving.runtime.InFlight`), and the link publishes those
totals as ``u:`` fields (unsettled: queries with a reply, samples, tokens, cost, per arm)
beside the ``l:`` ledger fields; when the query settles its replies move from the one to the
other in the same step, so a sync never sees them twice or not at all. Both are kept
contribution fields, not reservations, and the fleet's ledger (``/metrics``, ``/health``) is
their sum: every reply counted from the sync after it arrived (2 ms), a query once it has a
reply.

A replica that dies stops renewing its lease: its reservations (the expected cost of its
queries in flight, the holds against a cap) leave the fleet's totals after the store's lease,
while everything it had received up to its last sync stays counted, settled or not. What it
received in the last coalescing window before it died (2 ms plus one sync's round trip) is
lost; so is what it received since its last successful sync when it dies while the store is
unavailable. The budget controller's totals (``c:`` fields, the price) count a query when it
settles: what a killed replica's unsettled queries received is in the fleet's ledger, not in
its controller's spend. While a keyed query runs, what it has received counts against the
key's cap besides its hold (conservative, until it settles).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from computealloc.serving.budget import BudgetController
from computealloc.serving.runtime import AnsweringRuntime, Ledger
from computealloc.serving.spend_store import Cap, SpendStore, StoreUnavailable, SyncResult
from computealloc.serving.workers import WorkerState, combine

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = [
    "AccountLink",
    "CapExceeded",
    "Fleet",
    "KeyBudget",
    "KeysFileError",
    "read_keys",
    "replica_id",
]

#: Controller totals as contribution fields (reservations carry the store's ``r:`` prefix).
_CONTROLLER_FIELDS = {
    "spent": "c:spent",
    "n": "c:n",
    "reserved": "r:reserved",
    "in_flight": "r:in_flight",
    "area": "c:area",
}
_LEDGER_FIELDS = ("queries", "failed", "samples", "output_tokens", "prompt_tokens", "cost")
#: Ledger fields of the replies received by queries in flight (``u:``, unsettled; per arm
#: ``us:`` and ``uc:``), kept like the ledger's (not reservations: they outlive the lease).
_UNSETTLED_FIELDS = ("queries", "samples", "output_tokens", "prompt_tokens", "cost")
#: Seconds a change waits before it is synced (requests finishing meanwhile share the sync).
_COALESCE_S = 0.002
_PERIODS = {"hour": 3600.0, "day": 86400.0, "week": 604800.0, "month": 2592000.0}


class CapExceeded(Exception):
    """The hard cap of an API key is spent for the current period."""


def replica_id() -> str:
    """A fresh id for this replica (host, process, random suffix)."""
    return f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


# --- keys file --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyBudget:
    """One API key's budget.

    Attributes
    ----------
    name : str
        The key's name in metrics, ``/health`` and the store (the key itself is never shown).
    key : str
        The API key clients send as ``Authorization: Bearer <key>``.
    budget : float
        Mean cost per query held for the key's traffic, in the policy's cost unit.
    cap : float or None
        Hard cap on the key's total spend per period; a request that could take the spend
        over it is refused with 429 before anything is spent.
    period_s : float
        Length of a cap period in seconds (periods are aligned to the Unix epoch, UTC).
    """

    name: str
    key: str
    budget: float
    cap: float | None = None
    period_s: float = _PERIODS["day"]


class KeysFileError(ValueError):
    """A keys file that cannot be read; the message names the file and the entry."""


def read_keys(path: str | os.PathLike[str]) -> list[KeyBudget]:
    """Read a keys file: API key -> budget and optional hard cap per period.

    The file is JSON: ``{"keys": [{"name": "team-a", "key": "sk-...", "budget": 2.0,
    "cap": 5000, "period": "day"}, ...]}``. ``key_env`` (the name of an environment variable
    holding the key) may replace ``key``; ``cap`` and ``period`` (``hour``, ``day``, ``week``,
    ``month`` or seconds; default ``day``) are optional.

    Raises
    ------
    KeysFileError
        Naming the file, the entry and the field of the first problem.
    """
    where = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KeysFileError(f"{where}: cannot read the keys file: {exc}") from exc
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise KeysFileError(f"{where}: expected an object with a non-empty 'keys' list.")
    keys = [_key_entry(entry, f"{where}: keys[{i}]") for i, entry in enumerate(entries)]
    for field in ("name", "key"):
        seen = Counter(getattr(k, field) for k in keys)
        dup = [v for v, n in seen.items() if n > 1]
        if dup:
            shown = dup[0] if field == "name" else "<hidden>"
            raise KeysFileError(f"{where}: two entries share the {field} {shown!r}.")
    return keys


def _key_entry(entry: object, where: str) -> KeyBudget:
    if not isinstance(entry, dict):
        raise KeysFileError(f"{where}: expected an object. Got {type(entry).__name__}.")
    name = entry.get("name")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise KeysFileError(
            f"{where}.name: expected a non-empty name of letters, digits, '-' and '_'. "
            f"Got {name!r}."
        )
    key = entry.get("key")
    if "key_env" in entry:
        key = os.environ.get(str(entry["key_env"]))
        if not key:
            raise KeysFileError(f"{where}.key_env: the variable {entry['key_env']!r} is not set.")
    if not isinstance(key, str) or not key:
        raise KeysFileError(f"{where}.key: expected a non-empty string (or 'key_env').")
    budget = _positive(entry.get("budget"), f"{where}.budget")
    cap = None if entry.get("cap") is None else _positive(entry["cap"], f"{where}.cap")
    period = entry.get("period", "day")
    period_s = _PERIODS.get(period) if isinstance(period, str) else None
    if period_s is None:
        period_s = _positive(period, f"{where}.period", f"one of {', '.join(_PERIODS)} or ")
    return KeyBudget(name, key, budget, cap, period_s)


def _positive(value: object, where: str, also: str = "") -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        raise KeysFileError(f"{where}: expected {also}a number in (0, inf). Got {value!r}.")
    return float(value)  # type: ignore[arg-type]


# --- linking a runtime to the store -----------------------------------------------------------


class AccountLink:
    """One budget account of this replica, kept in step with the fleet through a store.

    Parameters
    ----------
    store : SpendStore
        Where the fleet's totals live.
    account : str
        The account's name in the store (replicas with the same name share the budget).
    replica : str
        This replica's id (:func:`replica_id`).
    runtime : AnsweringRuntime
        The runtime spending the account's budget (its controller and ledger).
    statuses : Counter of int, optional
        Chat requests per HTTP status, published with the account.
    key : KeyBudget, optional
        The API key the account belongs to, for its hard cap.
    worst_cost : float
        The most a query can be expected to cost (held against the cap while it runs).
    interval : float
        Seconds between two syncs when nothing changes (renews the lease, polls the fleet).

    Attributes
    ----------
    up : bool
        Whether the last sync reached the store.
    errors : int
        Syncs that failed.
    refused : int
        Requests refused by the cap (this replica).
    latencies : deque of float
        Seconds per successful sync, the most recent ones.
    """

    def __init__(
        self,
        store: SpendStore,
        account: str,
        replica: str,
        runtime: AnsweringRuntime,
        *,
        statuses: Counter[int] | None = None,
        key: KeyBudget | None = None,
        worst_cost: float = 0.0,
        interval: float = 0.5,
    ) -> None:
        self.store = store
        self.account = account
        self.replica = replica
        self.runtime = runtime
        self.statuses = statuses
        self.key = key
        self.worst_cost = float(worst_cost)
        self.interval = float(interval)
        self.up = False
        self.errors = 0
        self.refused = 0
        self.replicas = 1
        self.latencies: deque[float] = deque(maxlen=10_000)
        self._pushed: dict[str, float] = {}
        self._version = 0  # of the last sync the store applied (0: none yet)
        self._fleet: dict[str, float] = {}
        self._holds = 0.0
        self._period: tuple[int, float] | None = None  # (index, ledger cost at its start)
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._watched: BudgetController | None = None
        runtime.in_flight.subscribe(self._dirty.set)  # a reply arrived, or a query settled

    # --- contribution and fleet view ------------------------------------------------------

    def fields(self) -> dict[str, float]:
        """This replica's whole contribution to the account, as store fields."""
        controller = self._controller()
        out: dict[str, float] = {}
        if controller is not None:
            for name, value in controller.totals().items():
                out[_CONTROLLER_FIELDS[name]] = value
        ledger = self.runtime.ledger
        unsettled = self.runtime.in_flight.totals()  # read with the ledger: no await between
        for name in _LEDGER_FIELDS:
            out[f"l:{name}"] = float(getattr(ledger, name))
        out.update({f"a:{a}": float(n) for a, n in ledger.actions.items()})
        out.update({f"as:{a}": float(n) for a, n in ledger.arm_samples.items()})
        out.update({f"ac:{a}": float(c) for a, c in ledger.arm_cost.items()})
        for name in _UNSETTLED_FIELDS:
            out[f"u:{name}"] = float(getattr(unsettled, name))
        for name in self._pushed:  # an arm with nothing in flight any more states 0
            if name.startswith(("us:", "uc:")):
                out[name] = 0.0
        out.update({f"us:{a}": float(n) for a, n in unsettled.arm_samples.items()})
        out.update({f"uc:{a}": float(c) for a, c in unsettled.arm_cost.items()})
        if self.statuses is not None:
            out.update({f"s:{code}": float(n) for code, n in self.statuses.items()})
        out["l:refused"] = float(self.refused)
        if self.key is not None and self.key.cap is not None:
            cost = ledger.cost + unsettled.cost
            index, base = self._period_of(cost)
            out[f"p:{index}"] = cost - base
            out[f"r:held:{index}"] = self._holds
        return out

    def _cost(self) -> float:
        """Cost this replica spent on the account: settled, and received by queries in flight."""
        return self.runtime.ledger.cost + self.runtime.in_flight.totals().cost

    def _period_of(self, cost: float) -> tuple[int, float]:
        assert self.key is not None
        index = int(time.time() // self.key.period_s)
        if self._period is None or self._period[0] != index:
            self._period = (index, cost if self._period is not None else 0.0)
        return self._period

    def view(self) -> dict[str, float]:
        """The fleet's totals as this replica sees them now: the last reply of the store plus
        what this replica did since (exact for its own part, stale by one sync for others)."""
        now = self.fields()
        out = dict(self._fleet)
        for name in now.keys() | self._pushed.keys():
            out[name] = out.get(name, 0.0) + now.get(name, 0.0) - self._pushed.get(name, 0.0)
        return out

    def fleet_state(self) -> WorkerState:
        """The fleet's totals as a :class:`~computealloc.serving.workers.WorkerState` (its price is
        this replica's price, which is computed from them)."""
        return state_of(self.view(), self.runtime.lam)

    def own_state(self) -> WorkerState:
        """This replica's own totals."""
        return WorkerState(self.runtime.ledger, dict(self.statuses or {}), self.runtime.lam)

    def period_spend(self) -> float:
        """Spend of the key in the current cap period (fleet), and nothing without a cap."""
        if self.key is None or self.key.cap is None:
            return math.nan
        view = self.view()
        index = self._period_of(self._cost())[0]
        return view.get(f"p:{index}", 0.0)

    def _controller(self) -> BudgetController | None:
        controller = self.runtime.controller
        if controller is not None and controller is not self._watched:
            controller.subscribe(self._dirty.set)  # a runtime may create it at its first batch
            self._watched = controller
        return controller

    # --- syncing --------------------------------------------------------------------------

    async def sync(self, hold: float = 0.0) -> bool:
        """Publish the contribution (with ``hold`` more held against the cap, checked).

        Returns False when the cap refused the hold; True otherwise, also when the store is
        unavailable (the replica then runs on local control, see the module).
        """
        cap = self._cap() if hold else None
        if cap is not None and not self.up and self.errors:  # down: do not queue behind retries
            return self._fits_locally(cap, hold)
        async with self._lock:
            fields = self.fields()
            if cap is not None:
                fields[cap.held] += hold
            start = time.perf_counter()
            try:
                result = await self._send(fields, cap)
            except StoreUnavailable:
                self.up = False
                self.errors += 1
                return cap is None or self._fits_locally(cap, hold)
            self.latencies.append(time.perf_counter() - start)
            self.up = True
            if result.applied:
                self._pushed = fields
                self._version += 1
                self._holds += hold
            self._receive(result)
            return result.applied

    async def _send(self, fields: dict[str, float], cap: Cap | None) -> SyncResult:
        """Sync the fields that changed since the last sync; all of them if the store lost it."""
        version = self._version + 1
        if self._version:
            pushed = self._pushed
            changed = {k: v for k, v in fields.items() if pushed.get(k) != v}
            result = await self.store.sync(
                self.account, self.replica, changed, cap=cap, version=version, after=self._version
            )
            if result.known:
                return result
        return await self.store.sync(self.account, self.replica, fields, cap=cap, version=version)

    def _cap(self) -> Cap:
        assert self.key is not None and self.key.cap is not None
        index = self._period_of(self._cost())[0]
        return Cap(self.key.cap, f"p:{index}", f"r:held:{index}")

    def _fits_locally(self, cap: Cap, hold: float) -> bool:
        """Cap check against this replica's view of the fleet (the store is unavailable)."""
        view = self.view()
        if view.get(cap.spent, 0.0) + view.get(cap.held, 0.0) + hold > cap.limit:
            return False
        self._holds += hold
        return True

    def _receive(self, result: SyncResult) -> None:
        self._fleet = result.fleet
        self.replicas = result.replicas
        controller = self._controller()
        if controller is not None:
            pushed = self._pushed
            controller.set_others(
                {
                    name: result.fleet.get(field, 0.0) - pushed.get(field, 0.0)
                    for name, field in _CONTROLLER_FIELDS.items()
                }
            )

    async def admit(self) -> float:
        """Hold the worst expected cost of one query against the key's cap.

        Returns
        -------
        float
            The amount held, to :meth:`release` when the query is over (0 without a cap).

        Raises
        ------
        CapExceeded
            When the hold would take the period's spend over the cap (nothing is held).
        """
        if self.key is None or self.key.cap is None:
            return 0.0
        if not await self.sync(self.worst_cost):
            self.refused += 1
            self._dirty.set()
            raise CapExceeded(
                f"The API key {self.key.name!r} has spent its cap of {self.key.cap:g} for the "
                f"current period ({self.period_spend():g} spent, {self.worst_cost:g} more "
                "needed for a query)."
            )
        return self.worst_cost

    def release(self, held: float) -> None:
        """End a hold of :meth:`admit` (the query's real cost is in the ledger by now)."""
        if held:
            self._holds = max(self._holds - held, 0.0)
            self._dirty.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:  # not wait_for: on 3.11 it can swallow a cancel (stop) that meets a change
                async with asyncio.timeout(self.interval):
                    await self._dirty.wait()
            except TimeoutError:  # renew the lease, poll the fleet
                changed = True
            else:  # let the request that changed the totals finish first, gather more changes
                await asyncio.sleep(_COALESCE_S)
                changed = self.fields() != self._pushed  # else a cap check already synced it
            self._dirty.clear()
            if changed:
                await self.sync()
            if not self.up:  # retry an unavailable store once per interval, not per change
                await asyncio.sleep(self.interval)

    async def start(self) -> None:
        """First sync (the controller starts from the fleet's totals), then keep in step."""
        await self.sync()
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop syncing after a last sync of everything spent."""
        if self._task is not None:
            self._stopping = True  # also ends the loop where a client library ate the cancel
            self._dirty.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sync()

    async def refresh(self) -> None:
        """Sync now (fresh fleet totals for a scrape)."""
        await self.sync()

    def latency_quantiles(self) -> tuple[float, float]:
        """p50 and p99 of the sync latency, in seconds (NaN before any)."""
        if not self.latencies:
            return math.nan, math.nan
        q = np.quantile(np.fromiter(self.latencies, dtype=np.float64), [0.5, 0.99])
        return float(q[0]), float(q[1])


def state_of(fields: Mapping[str, float], lam: float) -> WorkerState:
    """A :class:`~computealloc.serving.workers.WorkerState` from contribution fields: the ledger
    counts
    what was settled and what queries in flight received (``l:`` plus ``u:`` fields)."""

    def total(name: str) -> float:
        return fields.get(f"l:{name}", 0.0) + fields.get(f"u:{name}", 0.0)

    def per_arm(settled: str, unsettled: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for prefix in (settled, unsettled):
            for f, v in fields.items():
                if f.startswith(prefix) and (v or prefix == settled):
                    out[f[len(prefix) :]] = out.get(f[len(prefix) :], 0.0) + v
        return out

    ledger = Ledger(
        queries=round(total("queries")),
        failed=round(fields.get("l:failed", 0.0)),
        samples=round(total("samples")),
        output_tokens=round(total("output_tokens")),
        cost=total("cost"),
        actions={f[2:]: round(v) for f, v in fields.items() if f.startswith("a:")},
        prompt_tokens=round(total("prompt_tokens")),
        arm_samples={a: round(v) for a, v in per_arm("as:", "us:").items()},
        arm_cost=per_arm("ac:", "uc:"),
    )
    statuses = {int(f[2:]): round(v) for f, v in fields.items() if f.startswith("s:")}
    return WorkerState(ledger, statuses, lam)


# --- the accounts of one replica ----------------------------------------------------------------


class Fleet:
    """Every budget account this replica serves, linked to one store.

    Parameters
    ----------
    store : SpendStore
        The shared store (a :class:`~computealloc.serving.spend_store.MemoryStore` for one server).
    name : str
        The budget's name: replicas with the same store and name share the budget, and each
        key's budget ``NAME/key/KEYNAME``.
    runtime : AnsweringRuntime
        The runtime of requests that carry no key of ``keys``.
    statuses : Counter of int
        Chat requests per HTTP status on this replica (published with the main account).
    keys : sequence of (KeyBudget, runtime, worst_cost)
        Per-key budgets: the key, the runtime spending its budget, the most one of its queries
        can be expected to cost.
    """

    def __init__(
        self,
        store: SpendStore,
        name: str,
        runtime: AnsweringRuntime,
        statuses: Counter[int],
        keys: Sequence[tuple[KeyBudget, AnsweringRuntime, float]] = (),
    ) -> None:
        self.store = store
        self.name = name
        self.replica = replica_id()
        self.main = AccountLink(store, name, self.replica, runtime, statuses=statuses)
        self.keys = {
            key.name: AccountLink(
                store, f"{name}/key/{key.name}", self.replica, rt, key=key, worst_cost=worst
            )
            for key, rt, worst in keys
        }
        self._bearers = [
            (f"Bearer {link.key.key}".encode(), link) for link in self.keys.values() if link.key
        ]

    @property
    def links(self) -> list[AccountLink]:
        return [self.main, *self.keys.values()]

    def account(self, authorization: str) -> AccountLink | None:
        """The key account whose key ``authorization`` (a header value) carries, else None."""
        given = authorization.encode()
        found = None
        for bearer, link in self._bearers:  # compare with every key: no timing hint of which
            if hmac.compare_digest(given, bearer):
                found = link
        return found

    async def start(self) -> None:
        for link in self.links:
            await link.start()

    async def stop(self) -> None:
        for link in self.links:
            await link.stop()
        await self.store.aclose()

    async def refresh(self) -> None:
        """Fresh fleet totals from the store (for a scrape)."""
        await asyncio.gather(*(link.refresh() for link in self.links))

    def totals(self) -> tuple[WorkerState, int]:
        """The fleet's totals over every account, and the replicas holding the budget."""
        return combine([link.fleet_state() for link in self.links]), self.main.replicas

    def own(self) -> WorkerState:
        """This replica's own totals over every account."""
        return combine([link.own_state() for link in self.links])

    @property
    def up(self) -> bool:
        return all(link.up for link in self.links)

    def health(self) -> dict[str, Any]:
        """The ``/health`` fields of the fleet: the store, this replica, every key."""
        own = self.own().ledger
        p50, p99 = self.main.latency_quantiles()
        return {
            "store": {
                "kind": type(self.store).__name__,
                "budget_name": self.name,
                "up": self.up,
                "control": "fleet" if self.up else "local",
                "errors": sum(link.errors for link in self.links),
                "sync_p50_ms": _ms(p50),
                "sync_p99_ms": _ms(p99),
            },
            "replica": {
                "id": self.replica,
                "queries": own.queries,
                "cost": own.cost,
                "mean_cost": _finite(own.mean_cost),
            },
            "keys": {
                name: {
                    "budget": link.runtime.budget,
                    "queries": (fleet := link.fleet_state().ledger).queries,
                    "mean_cost": _finite(fleet.mean_cost),
                    "lam": _finite(link.runtime.lam),
                    "cap": None if link.key is None else link.key.cap,
                    "period_spend": _finite(link.period_spend()),
                    "refused": round(link.view().get("l:refused", 0.0)),
                }
                for name, link in self.keys.items()
            },
        }

    def metrics(self) -> Iterator[Metric]:
        """Prometheus families of the store, this replica and every key."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        own = self.own().ledger
        yield GaugeMetricFamily(
            "computealloc_store_up",
            "1 while the spend store answers (fleet control), "
            "0 while this replica runs on local control.",
            value=float(self.up),
        )
        yield CounterMetricFamily(
            "computealloc_store_errors",
            "Syncs with the spend store that failed.",
            value=sum(link.errors for link in self.links),
        )
        for name, text, value in (
            ("queries", "Queries charged by this replica.", own.queries),
            ("cost", "Cost spent by this replica.", own.cost),
        ):
            yield CounterMetricFamily(f"computealloc_replica_{name}", text, value=value)
        yield GaugeMetricFamily(
            "computealloc_replica_mean_cost",
            "Mean cost per query of this replica.",
            value=own.mean_cost,
        )
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "queries": CounterMetricFamily(
                "computealloc_key_queries", "Queries charged per API key (fleet).", labels=["key"]
            ),
            "cost": CounterMetricFamily(
                "computealloc_key_cost", "Cost spent per API key (fleet).", labels=["key"]
            ),
            "refused": CounterMetricFamily(
                "computealloc_key_refused",
                "Requests refused by the key's cap (fleet).",
                labels=["key"],
            ),
            "mean_cost": GaugeMetricFamily(
                "computealloc_key_mean_cost",
                "Mean cost per query per API key (fleet).",
                labels=["key"],
            ),
            "budget": GaugeMetricFamily(
                "computealloc_key_budget", "Mean-cost budget per API key.", labels=["key"]
            ),
            "lam": GaugeMetricFamily(
                "computealloc_key_lam", "Dual price per API key.", labels=["key"]
            ),
            "period_cost": GaugeMetricFamily(
                "computealloc_key_period_cost",
                "Spend of the current cap period per API key (fleet).",
                labels=["key"],
            ),
            "cap": GaugeMetricFamily(
                "computealloc_key_cap", "Hard cap per period per API key.", labels=["key"]
            ),
        }
        for name, link in self.keys.items():
            ledger = link.fleet_state().ledger
            values = {
                "queries": ledger.queries,
                "cost": ledger.cost,
                "refused": link.view().get("l:refused", 0.0),
                "mean_cost": ledger.mean_cost,
                "budget": link.runtime.budget,
                "lam": link.runtime.lam,
                "period_cost": link.period_spend(),
                "cap": math.nan if link.key is None or link.key.cap is None else link.key.cap,
            }
            for field, family in families.items():
                family.add_metric([name], values[field])
        yield from families.values()


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ms(seconds: float) -> float | None:
    return round(seconds * 1e3, 4) if math.isfinite(seconds) else None
