"""Shared state for the guard rails, behind one small interface, in three places:

- ``memory``: this process only (the default; tests, single-process services);
- ``sqlite:PATH``: several processes on one host (one SQLite file, ``BEGIN IMMEDIATE``);
- ``redis://HOST:PORT/DB``: several hosts (each operation one Lua script, so atomic).

The same test suite runs against all three. Times are passed in by the caller (seconds since the
epoch from its clock), so every store can be tested with a hand-moved clock; with Redis across
hosts, the hosts' clocks must agree to well under a lease (NTP does).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from .errors import Internal

__all__ = [
    "Claim",
    "Ledger",
    "MemoryStore",
    "NoSuchStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreStateLost",
    "Window",
    "open_existing_store",
    "open_store",
]

Status = Literal["acquired", "done", "running"]


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to :meth:`Store.begin`: run the work, here is its result, or someone is on it."""

    status: Status
    value: bytes | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """One budget window: spend in it (settled plus live holds) may not pass ``limit``
    (micro-USD; None: counted, never refused). The record goes away ``ttl_s`` after ``now``."""

    key: str
    limit: int | None
    ttl_s: float


class Ledger(Protocol):
    """Budget windows: money held by reservations, then settled. Amounts are integer micro-USD
    (a float sum of 100 x $0.01 is not $1.00)."""

    def budget_reserve(
        self, windows: list[Window], hold: str, amount: int, hold_ttl_s: float, now: float
    ) -> str | None:
        """Atomically hold ``amount`` in every window, or in none: returns None when held, else
        the key of the first window it would push past its limit. Expired holds do not count."""
        ...

    def budget_settle(
        self, keys: list[str], hold: str, actual: int, now: float | None = None
    ) -> bool:
        """Replace the hold with the actual amount, in every window: always counted, even when
        the hold (or the window's record) expired meanwhile, since the money was spent. Returns
        whether the hold was still live at ``now`` (False: a late settle, see :meth:`budget_renew`);
        without ``now``, whether it was still there."""
        ...

    def budget_renew(self, keys: list[str], hold: str, hold_ttl_s: float, now: float) -> bool:
        """Extend a live hold to ``now + hold_ttl_s`` in every window (the lease heartbeat), at
        once. False, changing nothing, when it is no longer live: it expired (others may have
        been admitted against the room it left) or was settled, released or swept."""
        ...

    def budget_release(self, keys: list[str], hold: str) -> None:
        """Drop the hold: nothing was spent."""
        ...

    def budget_spent(self, keys: list[str], now: float) -> list[tuple[int, int]]:
        """(settled, live held) per window."""
        ...


class Store(Protocol):
    """Idempotency records: one per key, ``running`` (with an owner and a lease) or ``done``."""

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        """Atomically: the stored result if done; ``running`` if another owner's lease is live;
        else take the key (``acquired``): it was free, expired, or its holder's lease ran out."""
        ...

    def complete(self, key: str, owner: str, value: bytes, ttl_s: float, now: float) -> bool:
        """Store the result if ``owner`` still holds the key; False when its lease was lost."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Give the key up (the work failed and failures are not stored)."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """Process-local store: a dict under a lock."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[str, str, float, bytes | None]] = {}
        # budget window key -> [settled, {hold: (amount, expires)}, expires]
        self._ledger: dict[str, list[Any]] = {}
        self._ops = 0
        self._lock = threading.Lock()

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        with self._lock:
            self._ops += 1
            if self._ops % 4096 == 0:  # now and then, forget what has expired
                self._sweep(now)
            record = self._records.get(key)
            if record is not None:
                state, _, until, value = record
                if state == "done" and until > now:
                    return Claim("done", value)
                if state == "running" and until > now:
                    return Claim("running")
            self._records[key] = ("running", owner, now + lease_s, None)
            return Claim("acquired")

    def complete(self, key: str, owner: str, value: bytes, ttl_s: float, now: float) -> bool:
        with self._lock:
            record = self._records.get(key)
            if record is None or record[0] != "running" or record[1] != owner:
                return False
            self._records[key] = ("done", owner, now + ttl_s, value)
            return True

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            record = self._records.get(key)
            if record is not None and record[0] == "running" and record[1] == owner:
                del self._records[key]

    def close(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if r[2] <= now]:
            del self._records[key]
        for key in [k for k, e in self._ledger.items() if e[2] <= now]:
            del self._ledger[key]

    # -- ledger ----------------------------------------------------------------------------------
    def budget_reserve(
        self, windows: list[Window], hold: str, amount: int, hold_ttl_s: float, now: float
    ) -> str | None:
        with self._lock:
            ledger = self._ledger
            entries = []
            for window in windows:
                entry = ledger.get(window.key)
                if entry is None or entry[2] <= now:  # new, or the window's record expired
                    entry = ledger[window.key] = [0, {}, now + window.ttl_s]
                entries.append(entry)
                if window.limit is not None:
                    holds = entry[1]
                    held = sum(a for a, until in holds.values() if until > now) if holds else 0
                    if entry[0] + held + amount > window.limit:
                        return window.key
            until = now + hold_ttl_s
            for entry in entries:
                entry[1][hold] = (amount, until)
            return None

    def budget_settle(
        self, keys: list[str], hold: str, actual: int, now: float | None = None
    ) -> bool:
        with self._lock:
            live = self._held(keys, hold, now)
            for key in keys:
                entry = self._ledger.get(key)
                if entry is None:  # swept meanwhile: the spend still counts
                    entry = self._ledger[key] = [0, {}, float("inf")]
                entry[1].pop(hold, None)
                entry[0] += actual
            return live

    def budget_renew(self, keys: list[str], hold: str, hold_ttl_s: float, now: float) -> bool:
        with self._lock:
            if not self._held(keys, hold, now):
                return False
            until = now + hold_ttl_s
            for key in keys:
                holds = self._ledger[key][1] if key in self._ledger else {}
                if hold in holds:
                    holds[hold] = (holds[hold][0], until)
            return True

    def _held(self, keys: list[str], hold: str, now: float | None) -> bool:
        """The hold is live: unexpired in every window whose record is (at least one)."""
        windows = 0
        for key in keys:
            entry = self._ledger.get(key)
            if entry is None or (now is not None and entry[2] <= now):
                continue  # the window is over: no hold needed there
            windows += 1
            held = entry[1].get(hold)
            if held is None or (now is not None and held[1] <= now):
                return False
        return windows > 0

    def budget_release(self, keys: list[str], hold: str) -> None:
        with self._lock:
            for key in keys:
                entry = self._ledger.get(key)
                if entry is not None:
                    entry[1].pop(hold, None)

    def budget_spent(self, keys: list[str], now: float) -> list[tuple[int, int]]:
        with self._lock:
            out = []
            for key in keys:
                settled, holds = self._window(key, now, create=False)
                out.append((settled, sum(a for a, e in holds.values() if e > now)))
            return out

    def _window(
        self, key: str, now: float, ttl_s: float | None = None, create: bool = True
    ) -> tuple[int, dict[str, tuple[int, float]]]:
        entry = self._ledger.get(key)
        if entry is not None and entry[2] <= now:  # the window's record expired
            del self._ledger[key]
            entry = None
        if entry is None:
            if not create:
                return 0, {}
            entry = self._ledger[key] = [0, {}, now + (ttl_s or 0)]
        elif ttl_s is not None and entry[2] < now + ttl_s:
            entry[2] = now + ttl_s
        return entry[0], entry[1]


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS blameset_idempotency (
        key TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT NOT NULL, until REAL NOT NULL,
        value BLOB)""",
    """CREATE TABLE IF NOT EXISTS blameset_budget (
        window TEXT PRIMARY KEY, settled INTEGER NOT NULL, expires REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS blameset_budget_holds (
        window TEXT NOT NULL, hold TEXT NOT NULL, amount INTEGER NOT NULL, expires REAL NOT NULL,
        PRIMARY KEY (window, hold))""",
)


class SQLiteStore:
    """One SQLite file shared by the processes of a host. Each operation is one ``BEGIN
    IMMEDIATE`` transaction (the write lock is taken before reading), so two processes can
    never both acquire a key. One connection per thread; WAL, so readers do not block."""

    def __init__(self, path: str | Path) -> None:
        if str(path) in (":memory:", "") or str(path).startswith("file::memory:"):
            raise ValueError(
                "an in-memory SQLite database is private to one connection: use the 'memory' "
                "store for one process, or a file path for several"
            )
        self.path = str(path)
        self._ops = 0
        self._local = threading.local()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _transaction(self) -> _Tx:
        return _Tx(self._connection())

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        with self._transaction() as db:
            self._ops += 1
            if self._ops % 1024 == 0:  # now and then, delete what has expired
                db.execute("DELETE FROM blameset_idempotency WHERE until <= ?", (now,))
                db.execute("DELETE FROM blameset_budget_holds WHERE expires <= ?", (now,))
                db.execute("DELETE FROM blameset_budget WHERE expires <= ?", (now,))
            row = db.execute(
                "SELECT state, until, value FROM blameset_idempotency WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                state, until, value = row
                if state == "done" and until > now:
                    return Claim("done", bytes(value) if value is not None else None)
                if state == "running" and until > now:
                    return Claim("running")
            db.execute(
                "INSERT OR REPLACE INTO blameset_idempotency (key, state, owner, until, value) "
                "VALUES (?, 'running', ?, ?, NULL)",
                (key, owner, now + lease_s),
            )
            return Claim("acquired")

    def complete(self, key: str, owner: str, value: bytes, ttl_s: float, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE blameset_idempotency SET state = 'done', until = ?, value = ? "
                "WHERE key = ? AND owner = ? AND state = 'running'",
                (now + ttl_s, value, key, owner),
            )
            return cursor.rowcount == 1

    def release(self, key: str, owner: str) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM blameset_idempotency "
                "WHERE key = ? AND owner = ? AND state = 'running'",
                (key, owner),
            )

    # -- ledger ----------------------------------------------------------------------------------
    def budget_reserve(
        self, windows: list[Window], hold: str, amount: int, hold_ttl_s: float, now: float
    ) -> str | None:
        with self._transaction() as db:
            for window in windows:
                if window.limit is None:
                    continue
                settled, held = self._totals(db, window.key, now)
                if settled + held + amount > window.limit:
                    return window.key
            for window in windows:
                db.execute(
                    "INSERT INTO blameset_budget (window, settled, expires) VALUES (?, 0, ?) "
                    "ON CONFLICT(window) DO UPDATE SET expires = max(expires, excluded.expires)",
                    (window.key, now + window.ttl_s),
                )
                db.execute(
                    "INSERT OR REPLACE INTO blameset_budget_holds VALUES (?, ?, ?, ?)",
                    (window.key, hold, amount, now + hold_ttl_s),
                )
            return None

    def budget_settle(
        self, keys: list[str], hold: str, actual: int, now: float | None = None
    ) -> bool:
        with self._transaction() as db:
            live = self._held(db, keys, hold, now)
            for key in keys:
                db.execute(
                    "DELETE FROM blameset_budget_holds WHERE window = ? AND hold = ?", (key, hold)
                )
                db.execute(
                    "INSERT INTO blameset_budget (window, settled, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT(window) DO UPDATE SET settled = settled + excluded.settled",
                    (key, actual, float("inf")),
                )
            return live

    def budget_renew(self, keys: list[str], hold: str, hold_ttl_s: float, now: float) -> bool:
        with self._transaction() as db:
            if not self._held(db, keys, hold, now):
                return False
            marks = ",".join("?" * len(keys))
            db.execute(
                "UPDATE blameset_budget_holds SET expires = ? "
                f"WHERE hold = ? AND window IN ({marks})",
                (now + hold_ttl_s, hold, *keys),
            )
            return True

    @staticmethod
    def _held(db: sqlite3.Connection, keys: list[str], hold: str, now: float | None) -> bool:
        """The hold is live: unexpired in every window whose record is (at least one)."""
        at = float("-inf") if now is None else now
        marks = ",".join("?" * len(keys))
        windows, holding = db.execute(
            "SELECT COUNT(*), COUNT(h.hold) FROM blameset_budget AS b "
            "LEFT JOIN blameset_budget_holds AS h "
            "ON h.window = b.window AND h.hold = ? AND h.expires > ? "
            f"WHERE b.window IN ({marks}) AND b.expires > ?",
            (hold, at, *keys, at),
        ).fetchone()
        return bool(windows) and windows == holding

    def budget_release(self, keys: list[str], hold: str) -> None:
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM blameset_budget_holds WHERE window = ? AND hold = ?",
                [(key, hold) for key in keys],
            )

    def budget_spent(self, keys: list[str], now: float) -> list[tuple[int, int]]:
        db = self._connection()
        return [self._totals(db, key, now) for key in keys]

    @staticmethod
    def _totals(db: sqlite3.Connection, key: str, now: float) -> tuple[int, int]:
        row = db.execute(
            "SELECT settled FROM blameset_budget WHERE window = ? AND expires > ?", (key, now)
        ).fetchone()
        held = db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM blameset_budget_holds "
            "WHERE window = ? AND expires > ?",
            (key, now),
        ).fetchone()[0]
        return (int(row[0]) if row else 0), int(held)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


# The idempotency scripts first check the store's epoch (KEYS[2], see RedisStore): a Redis that
# lost its data no longer has it, and every key would look new.
_EPOCH_CHECK = """
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[#ARGV] then
  if epoch then return {'lost', epoch} end
  return {'lost'}
end
"""
_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
_BEGIN = (
    _EPOCH_CHECK
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'until', 'value')
local now = tonumber(ARGV[2])
if h[1] == 'done' and tonumber(h[2]) > now then return {'done', h[3]} end
if h[1] == 'running' and tonumber(h[2]) > now then return {'running'} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'acquired'}
"""
)
_COMPLETE = (
    _EPOCH_CHECK
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'owner')
if h[1] ~= 'running' or h[2] ~= ARGV[1] then return {'lost_lease'} end
redis.call('HSET', KEYS[1], 'state', 'done', 'until', ARGV[3], 'value', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'stored'}
"""
)
_RELEASE = """
local h = redis.call('HMGET', KEYS[1], 'state', 'owner')
if h[1] == 'running' and h[2] == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
_RESERVE = """
local hold, amount, hold_until, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 + 2 * i])
  if limit >= 0 then
    local fields = redis.call('HGETALL', key)
    local used = 0
    for j = 1, #fields, 2 do
      local f, v = fields[j], fields[j + 1]
      if f == 'settled' then
        used = used + tonumber(v)
      else
        local a, e = string.match(v, '([^:]+):([^:]+)')
        if tonumber(e) > now then used = used + tonumber(a) else redis.call('HDEL', key, f) end
      end
    end
    if used + amount > limit then return i end
  end
end
for i, key in ipairs(KEYS) do
  redis.call('HSETNX', key, 'settled', 0)
  redis.call('HSET', key, 'h:' .. hold, ARGV[2] .. ':' .. hold_until)
  if redis.call('PTTL', key) < tonumber(ARGV[4 + 2 * i]) then
    redis.call('PEXPIRE', key, ARGV[4 + 2 * i])
  end
end
return 0
"""
# Whether hold ARGV[1] is live at ARGV[2]: unexpired in every window whose key still exists
# (a window whose key expired is over and needs no hold), and there is at least one.
_HELD = """
local function held(hold_field, now)
  local windows, amounts = 0, {}
  for i, key in ipairs(KEYS) do
    if redis.call('EXISTS', key) == 1 then
      windows = windows + 1
      local v = redis.call('HGET', key, hold_field)
      if not v then return nil end
      local a, e = string.match(v, '([^:]+):([^:]+)')
      if tonumber(e) <= now then return nil end
      amounts[i] = a
    end
  end
  if windows == 0 then return nil end
  return amounts
end
"""
_RENEW = (
    _HELD
    + """
local field = 'h:' .. ARGV[1]
local amounts = held(field, tonumber(ARGV[2]))
if not amounts then return 0 end
for i, a in pairs(amounts) do redis.call('HSET', KEYS[i], field, a .. ':' .. ARGV[3]) end
return 1
"""
)
_SETTLE = (
    _HELD
    + """
local at = -math.huge
if ARGV[4] ~= '' then at = tonumber(ARGV[4]) end
local live = 1
if not held('h:' .. ARGV[1], at) then live = 0 end
for _, key in ipairs(KEYS) do
  redis.call('HDEL', key, 'h:' .. ARGV[1])
  redis.call('HINCRBY', key, 'settled', ARGV[2])
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[3]) end
end
return live
"""
)
_SPENT = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  local settled, held = 0, 0
  for j = 1, #fields, 2 do
    local f, v = fields[j], fields[j + 1]
    if f == 'settled' then settled = tonumber(v)
    else
      local a, e = string.match(v, '([^:]+):([^:]+)')
      if tonumber(e) > now then held = held + tonumber(a) end
    end
  end
  out[2 * i - 1] = settled
  out[2 * i] = held
end
return out
"""

# Keys also carry a Redis TTL (the logical expiry plus this grace), so abandoned keys go away.
_GRACE_MS = 60_000
_MAX_TTL_S = 10 * 365 * 86_400.0  # "keep forever" (inf) as ten years: Redis wants an integer


class StoreStateLost(Internal):
    """The idempotency store lost the records it kept (a Redis restarted without persistence,
    flushed, or evicting): every key would look new and the work would run again, so the call
    is refused instead (code ``INTERNAL``)."""


def _without_password(url: str) -> str:
    """The URL to name in a message: ``redis://:secret@host`` must not reach a log."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


class RedisStore:
    """Redis (several hosts). Each operation is one Lua script, atomic on the server.

    **Lost state.** A Redis that restarts without persistence (or is flushed) comes back empty,
    and an empty store would run every action again. So the idempotency records carry an
    *epoch*: a random id kept under :attr:`epoch_key`, written by the first store to use the
    server and read by every later one. Each ``begin`` and ``complete`` checks it in the same
    script; when it is gone or changed, the call raises :class:`StoreStateLost` instead of
    running the work again (fail closed). A process that starts after the loss writes a new
    epoch and cannot know what was lost: keep the records with ``appendonly yes`` (see
    docs/backend/idempotency.md). The budget ledger has no epoch: an emptied ledger forgets
    spend, it does not repeat side effects."""

    def __init__(self, url: str, prefix: str = "blameset:idem:") -> None:
        import redis  # only services that choose Redis need the client

        self.url = url
        self.prefix = prefix
        # Outside the prefix, so no idempotency key can be it.
        self.epoch_key = (prefix.rstrip(":") or "blameset") + "-epoch"
        self.budget_prefix = "blameset:budget:"
        self._epoch: str | None = None
        self._epoch_lock = threading.Lock()
        self._client = redis.Redis.from_url(url)
        self._read_epoch = self._client.register_script(_EPOCH)
        self._begin = self._client.register_script(_BEGIN)
        self._complete = self._client.register_script(_COMPLETE)
        self._release = self._client.register_script(_RELEASE)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._renew = self._client.register_script(_RENEW)
        self._spent = self._client.register_script(_SPENT)

    @property
    def epoch(self) -> str:
        """The epoch this store works in: the server's, read (or written, on a server that has
        none) at the first idempotency call, then kept."""
        if self._epoch is None:
            with self._epoch_lock:
                if self._epoch is None:
                    raw: Any = self._read_epoch(keys=[self.epoch_key], args=[uuid.uuid4().hex])
                    self._epoch = raw.decode() if isinstance(raw, bytes) else str(raw)
        return self._epoch

    def _check(self, key: str, reply: Any) -> str:
        """The script's status; raises :class:`StoreStateLost` when the epoch was not there."""
        raw: Any = reply[0]
        status = raw.decode() if isinstance(raw, bytes) else str(raw)
        if status != "lost":
            return status
        now_epoch = reply[1].decode() if len(reply) > 1 else None
        what = (
            f"its epoch key {self.epoch_key!r} is gone"
            if now_epoch is None
            else f"its epoch changed from {self.epoch} to {now_epoch} (it was emptied and "
            "written again by a process started since)"
        )
        raise StoreStateLost(
            f"idempotency store {_without_password(self.url)} lost its records ({what}): Redis "
            f"restarted without persistence or was flushed. Refusing {key!r} rather than "
            "running work that may already have run. Keep Redis with appendonly yes and "
            "maxmemory-policy noeviction; restart this process to accept the new state"
        )

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        ttl_ms = int(lease_s * 1000) + _GRACE_MS
        reply: Any = self._begin(
            keys=[self.prefix + key, self.epoch_key],
            args=[owner, repr(now), repr(now + lease_s), ttl_ms, self.epoch],
        )
        status: Any = self._check(key, reply)
        value = reply[1] if len(reply) > 1 else None
        return Claim(status, value)

    def complete(self, key: str, owner: str, value: bytes, ttl_s: float, now: float) -> bool:
        """As :meth:`Store.complete`; raises :class:`StoreStateLost` when the store lost its
        records since this store's epoch began (nothing is stored)."""
        ttl_s = min(ttl_s, _MAX_TTL_S)
        ttl_ms = int(ttl_s * 1000) + _GRACE_MS
        reply: Any = self._complete(
            keys=[self.prefix + key, self.epoch_key],
            args=[owner, value, repr(now + ttl_s), ttl_ms, self.epoch],
        )
        return self._check(key, reply) == "stored"

    def release(self, key: str, owner: str) -> None:
        self._release(keys=[self.prefix + key], args=[owner])

    # -- ledger ----------------------------------------------------------------------------------
    def budget_reserve(
        self, windows: list[Window], hold: str, amount: int, hold_ttl_s: float, now: float
    ) -> str | None:
        args: list[Any] = [hold, amount, repr(now + hold_ttl_s), repr(now)]
        for window in windows:
            args += [-1 if window.limit is None else window.limit, int(window.ttl_s * 1000)]
        tripped: Any = self._reserve(keys=[self.budget_prefix + w.key for w in windows], args=args)
        return None if int(tripped) == 0 else windows[int(tripped) - 1].key

    def budget_settle(
        self, keys: list[str], hold: str, actual: int, now: float | None = None
    ) -> bool:
        # A window whose key expired meanwhile is re-created: the spend still counts.
        at = "" if now is None else repr(now)
        live: Any = self._settle(
            keys=[self.budget_prefix + k for k in keys], args=[hold, actual, 2 * 86_400_000, at]
        )
        return bool(int(live))

    def budget_renew(self, keys: list[str], hold: str, hold_ttl_s: float, now: float) -> bool:
        renewed: Any = self._renew(
            keys=[self.budget_prefix + k for k in keys],
            args=[hold, repr(now), repr(now + hold_ttl_s)],
        )
        return bool(int(renewed))

    def budget_release(self, keys: list[str], hold: str) -> None:
        pipe = self._client.pipeline(transaction=True)
        for key in keys:
            pipe.hdel(self.budget_prefix + key, "h:" + hold)
        pipe.execute()

    def budget_spent(self, keys: list[str], now: float) -> list[tuple[int, int]]:
        if not keys:
            return []
        flat: Any = self._spent(keys=[self.budget_prefix + k for k in keys], args=[repr(now)])
        return [(int(flat[2 * i]), int(flat[2 * i + 1])) for i in range(len(keys))]

    def close(self) -> None:
        self._client.close()


_memory = MemoryStore()


def open_store(spec: str | Store) -> Store:
    """A store from a spec string: ``memory`` (one per process, shared), ``sqlite:PATH``,
    ``redis://HOST:PORT/DB`` (or ``rediss://``); a Store object is returned as it is."""
    if not isinstance(spec, str):
        return spec
    if spec == "memory":
        return _memory
    if spec.startswith("sqlite:"):
        path = spec[len("sqlite:") :]
        if not path:
            raise ValueError(
                "store 'sqlite:PATH' needs a path, e.g. 'sqlite:/var/lib/app/guard.db'"
            )
        return SQLiteStore(path)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(spec)
    raise ValueError(
        f"unknown store {spec!r}: use 'memory', 'sqlite:PATH' or 'redis://HOST:PORT/DB'"
    )


class NoSuchStore(ValueError):
    """The spec names no store another process could have written: ``memory`` (each process
    has its own) or a SQLite file that is not there."""


def open_existing_store(spec: str) -> Store:
    """The store a running service writes, opened from another process to read it (``blameset
    budget status``, a notebook, a cron job): ``sqlite:PATH`` of an existing file or
    ``redis://HOST:PORT/DB``. Creates nothing: a missing SQLite file raises :class:`NoSuchStore`
    (opening it would create an empty store and show no spend), as does ``memory``; an unknown
    spec raises ``ValueError``. A Redis server is not contacted until the store is used."""
    if spec == "memory":
        raise NoSuchStore(
            "the memory store lives inside one process; "
            "point --store at the service's sqlite:PATH or redis:// store"
        )
    if spec.startswith("sqlite:") and not Path(spec[len("sqlite:") :]).is_file():
        raise NoSuchStore(f"no SQLite store at {spec[len('sqlite:') :]}")
    return open_store(spec)
