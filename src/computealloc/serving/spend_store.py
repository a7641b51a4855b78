"""Where a fleet of proxy replicas keeps the spend of one budget: in process or on Redis.

Every replica of a fleet owns a *contribution* to each budget account it serves: flat
numeric fields that only grow or shrink with its own traffic (the budget controller's
totals, the ledger, what its queries in flight have received so far, requests per status,
the spend of the current cap period, the expected cost of its queries in flight). A store
keeps, per account, each replica's last contribution and the fleet's totals (their sum), and
offers one atomic step:

``sync(account, replica, fields)``
    Replace this replica's contribution by ``fields`` and add the difference to the fleet's
    totals, in one atomic step (one Lua script on Redis); returns the fleet's totals after it.
    A reservation (a query decided) and a settlement (a query finished) are both one sync of
    the replica's new totals. Because a sync states totals rather than increments, it is
    idempotent: resending after a lost reply, or re-seeding an empty store after a restart,
    never counts anything twice.

A sync may send only the fields that changed since the replica's previous sync (``after``:
the store then checks that it still holds that sync; when it does not, after a restart that
lost or rolled back data, the sync is not applied and the replica sends everything again).

With a ``cap``, the sync is admitted only if the fleet's spend plus holds stays within the cap
afterwards (the hard cap of an API key); otherwise nothing changes. Fields whose names start
with ``r:`` are *reservations*: each sync renews the replica's lease, and when a lease lapses
(a replica killed with queries in flight) its reservations leave the fleet's totals, while
every other field, what it spent and what its queries in flight had received, stays counted.

:class:`MemoryStore` holds the accounts in this process (a single server, the default);
:class:`RedisStore` holds them on a Redis server shared by the replicas.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "RESERVED",
    "Cap",
    "MemoryStore",
    "RedisStore",
    "SpendStore",
    "StoreUnavailable",
    "SyncResult",
    "open_store",
]

#: Prefix of the fields that are reservations (dropped when their replica's lease lapses).
RESERVED = "r:"
#: Seconds a replica's reservations outlive its last sync.
DEFAULT_LEASE_S = 5.0


class StoreUnavailable(ConnectionError):
    """The spend store cannot be reached (or did not answer in time)."""


@dataclass(frozen=True)
class Cap:
    """A hard cap checked atomically by :meth:`SpendStore.sync`.

    Admitted only if ``fleet[spent] + fleet[held] <= limit`` after the sync.
    """

    limit: float
    spent: str
    held: str


@dataclass(frozen=True)
class SyncResult:
    """What a :meth:`SpendStore.sync` did.

    Attributes
    ----------
    applied : bool
        False when a cap refused it (nothing changed).
    fleet : dict of str to float
        The fleet's totals after the sync (before it, when refused).
    replicas : int
        Replicas holding a lease on the account.
    known : bool
        False when a partial sync was not applied because the store no longer holds the
        replica's previous sync (resend every field).
    """

    applied: bool
    fleet: dict[str, float]
    replicas: int
    known: bool = True


class SpendStore(ABC):
    """The spend of budget accounts shared by the replicas of a fleet (see the module)."""

    lease_s: float = DEFAULT_LEASE_S

    @abstractmethod
    async def sync(
        self,
        account: str,
        replica: str,
        fields: Mapping[str, float],
        *,
        cap: Cap | None = None,
        version: int | None = None,
        after: int | None = None,
    ) -> SyncResult:
        """Replace ``replica``'s contribution to ``account`` by ``fields``, atomically.

        Parameters
        ----------
        account : str
            The budget account (a budget name, or a budget name and an API key's name).
        replica : str
            This replica's id, unique in the fleet.
        fields : mapping of str to float
            Its whole contribution; a field it held before and omits now keeps its value.
        cap : Cap, optional
            Apply only if the fleet stays within the cap.
        version : int, optional
            A version number of the contribution to record with it.
        after : int, optional
            Apply only if the store holds this version of the replica's contribution
            (``fields`` may then omit what did not change since); else return ``known=False``.

        Returns
        -------
        SyncResult

        Raises
        ------
        StoreUnavailable
            When the store cannot be reached; the replica's previous contribution stands.
        """

    @abstractmethod
    async def snapshot(self, account: str) -> SyncResult:
        """The fleet's totals of ``account`` (expired reservations dropped first)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the connection, if any."""


def _sync_fields(
    fleet: dict[str, float],
    mine: dict[str, float],
    fields: Mapping[str, float],
    cap: Cap | None,
) -> bool:
    """Apply ``fields`` as a replica's contribution ``mine`` to ``fleet`` (the kernel of
    :class:`MemoryStore`, the same steps as the Redis script)."""
    delta = {name: float(value) - mine.get(name, 0.0) for name, value in fields.items()}
    if cap is not None:
        after = sum(fleet.get(f, 0.0) + delta.get(f, 0.0) for f in (cap.spent, cap.held))
        if after > cap.limit:
            return False
    for name, change in delta.items():
        fleet[name] = fleet.get(name, 0.0) + change
        mine[name] = float(fields[name])
    return True


class MemoryStore(SpendStore):
    """Accounts held in this process: one server (and its tests); the default store.

    Parameters
    ----------
    lease_s : float
        Seconds a replica's reservations outlive its last sync.
    """

    def __init__(self, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.lease_s = float(lease_s)
        self._fleet: dict[str, dict[str, float]] = {}
        self._replicas: dict[str, dict[str, dict[str, float]]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._versions: dict[tuple[str, str], int] = {}

    async def sync(
        self,
        account: str,
        replica: str,
        fields: Mapping[str, float],
        *,
        cap: Cap | None = None,
        version: int | None = None,
        after: int | None = None,
    ) -> SyncResult:
        self._expire(account)
        if after is not None and self._versions.get((account, replica)) != after:
            return SyncResult(False, {}, 0, known=False)
        fleet = self._fleet.setdefault(account, {})
        mine = self._replicas.setdefault(account, {}).setdefault(replica, {})
        applied = _sync_fields(fleet, mine, fields, cap)
        if applied and version is not None:
            self._versions[account, replica] = version
        self._leases.setdefault(account, {})[replica] = time.monotonic() + self.lease_s
        return SyncResult(applied, dict(fleet), len(self._leases[account]))

    async def snapshot(self, account: str) -> SyncResult:
        self._expire(account)
        return SyncResult(
            True, dict(self._fleet.get(account, {})), len(self._leases.get(account, {}))
        )

    async def aclose(self) -> None:
        """Nothing to release."""

    def _expire(self, account: str) -> None:
        leases = self._leases.get(account, {})
        now = time.monotonic()
        for replica in [r for r, until in leases.items() if until < now]:
            mine = self._replicas[account][replica]
            held = {f: v for f, v in mine.items() if f.startswith(RESERVED)}
            _sync_fields(self._fleet[account], mine, dict.fromkeys(held, 0.0), None)
            del leases[replica]


# --- Redis ------------------------------------------------------------------------------------

#: KEYS: fleet hash, replicas zset (lease deadlines, ms), replica-hash prefix.
#: ARGV: replica, lease ms, cap limit ('' for none), cap spent field, cap held field, version
#: the store must hold ('' for any), version to record ('' for none), then field/value pairs.
#: Returns {applied, replicas, JSON of the fleet's field/value pairs}, or {-1, 0} for an
#: unknown version.
_EXPIRE = """
local function expire(fleet, leases, prefix, now)
  local dead = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  for _, rid in ipairs(dead) do
    local key = prefix .. rid
    local mine = redis.call('HGETALL', key)
    for i = 1, #mine, 2 do
      if string.sub(mine[i], 1, 2) == 'r:' and tonumber(mine[i + 1]) ~= 0 then
        redis.call('HINCRBYFLOAT', fleet, mine[i], -tonumber(mine[i + 1]))
        redis.call('HSET', key, mine[i], 0)
      end
    end
    redis.call('ZREM', leases, rid)
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_SYNC = (
    _EXPIRE
    + """
local fleet, leases, prefix = KEYS[1], KEYS[2], KEYS[3]
local rid, lease = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
expire(fleet, leases, prefix, now)
local key = prefix .. rid
if ARGV[6] ~= '' and redis.call('HGET', key, '_v') ~= ARGV[6] then return {-1, 0} end
local names, values, deltas = {}, {}, {}
for i = 8, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', key, ARGV[i]) or '0')
  table.insert(names, ARGV[i])
  table.insert(values, ARGV[i + 1])
  table.insert(deltas, tonumber(ARGV[i + 1]) - old)
end
local applied = 1
if ARGV[3] ~= '' then
  local total = 0
  for _, f in ipairs({ARGV[4], ARGV[5]}) do
    total = total + tonumber(redis.call('HGET', fleet, f) or '0')
    for j, name in ipairs(names) do
      if name == f then total = total + deltas[j] end
    end
  end
  if total > tonumber(ARGV[3]) then applied = 0 end
end
if applied == 1 then
  for j, name in ipairs(names) do
    if deltas[j] ~= 0 then redis.call('HINCRBYFLOAT', fleet, name, deltas[j]) end
    redis.call('HSET', key, name, values[j])
  end
  if ARGV[7] ~= '' then redis.call('HSET', key, '_v', ARGV[7]) end
end
redis.call('ZADD', leases, now + lease, rid)
return {applied, redis.call('ZCARD', leases), cjson.encode(redis.call('HGETALL', fleet))}
"""
)

_SNAPSHOT = (
    _EXPIRE
    + """
expire(KEYS[1], KEYS[2], KEYS[3], now_ms())
return {1, redis.call('ZCARD', KEYS[2]), cjson.encode(redis.call('HGETALL', KEYS[1]))}
"""
)


class RedisStore(SpendStore):
    """Accounts on a Redis server shared by the replicas of a fleet.

    Each :meth:`sync` is one Lua script, so replicas never race on a read-modify-write.
    Keys are ``computealloc:{ACCOUNT}:fleet`` (hash), ``...:leases`` (sorted set) and
    ``...:replica:ID`` (hash); the braces keep an account's keys in one Redis Cluster slot.
    Reservations expire on the server's clock.

    Parameters
    ----------
    url : str
        ``redis://[:password@]HOST:PORT/DB`` (or ``rediss://`` for TLS).
    lease_s : float
        Seconds a replica's reservations outlive its last sync.
    timeout : float
        Seconds to wait for the server (connect and reply) before the store counts as
        unavailable.
    """

    def __init__(self, url: str, *, lease_s: float = DEFAULT_LEASE_S, timeout: float = 0.5):
        import redis.asyncio as redis

        self.url = url
        self.lease_s = float(lease_s)
        self._client: Any = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        self._sync = self._client.register_script(_SYNC)
        self._snapshot = self._client.register_script(_SNAPSHOT)

    @staticmethod
    def _keys(account: str) -> list[str]:
        base = f"computealloc:{{{account}}}"
        return [f"{base}:fleet", f"{base}:leases", f"{base}:replica:"]

    async def sync(
        self,
        account: str,
        replica: str,
        fields: Mapping[str, float],
        *,
        cap: Cap | None = None,
        version: int | None = None,
        after: int | None = None,
    ) -> SyncResult:
        args: list[str | float] = [replica, int(self.lease_s * 1000)]
        args += ["", "", ""] if cap is None else [repr(cap.limit), cap.spent, cap.held]
        args += ["" if after is None else str(after), "" if version is None else str(version)]
        for name, value in fields.items():
            args += [name, repr(float(value))]
        return _result(await self._call(self._sync, self._keys(account), args))

    async def snapshot(self, account: str) -> SyncResult:
        return _result(await self._call(self._snapshot, self._keys(account), []))

    async def _call(self, script: Any, keys: list[str], args: list[str | float]) -> list[Any]:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return list(await script(keys=keys, args=args))
        except (TimeoutError, RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"The spend store {self.url} is unavailable: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _result(reply: list[Any]) -> SyncResult:
    if int(reply[0]) == -1:
        return SyncResult(False, {}, 0, known=False)
    pairs = json.loads(reply[2])  # one bulk string: parsed in C, not item by item
    fleet = {str(pairs[i]): float(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    return SyncResult(bool(int(reply[0])), fleet, int(reply[1]))


def open_store(url: str | None, *, lease_s: float = DEFAULT_LEASE_S) -> SpendStore:
    """The store named by ``--spend-store``: None or ``memory://`` for this process,
    ``redis://HOST:PORT/DB`` (or ``rediss://``) for a Redis server.

    Raises
    ------
    ValueError
        For any other URL, or when the ``redis`` package is missing.
    """
    if url is None or url == "memory://":
        return MemoryStore(lease_s=lease_s)
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "The spend store must be 'memory://' or a redis://HOST:PORT/DB URL. "
            f"Got {url!r} instead."
        )
    try:
        import redis.asyncio  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "A Redis spend store needs the 'redis' package: pip install 'computealloc[serve]'."
        ) from exc
    return RedisStore(url, lease_s=lease_s)
