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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = ["Claim", "MemoryStore", "RedisStore", "SQLiteStore", "Store", "open_store"]

Status = Literal["acquired", "done", "running"]


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to :meth:`Store.begin`: run the work, here is its result, or someone is on it."""

    status: Status
    value: bytes | None = None


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
        self._lock = threading.Lock()

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        with self._lock:
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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS blameset_idempotency (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    until REAL NOT NULL,
    value BLOB
)
"""


class SQLiteStore:
    """One SQLite file shared by the processes of a host. Each operation is one ``BEGIN
    IMMEDIATE`` transaction (the write lock is taken before reading), so two processes can
    never both acquire a key. One connection per thread; WAL, so readers do not block."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.execute(_SCHEMA)

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


_BEGIN = """
local h = redis.call('HMGET', KEYS[1], 'state', 'until', 'value')
local now = tonumber(ARGV[2])
if h[1] == 'done' and tonumber(h[2]) > now then return {'done', h[3]} end
if h[1] == 'running' and tonumber(h[2]) > now then return {'running'} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'acquired'}
"""
_COMPLETE = """
local h = redis.call('HMGET', KEYS[1], 'state', 'owner')
if h[1] ~= 'running' or h[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'until', ARGV[3], 'value', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
_RELEASE = """
local h = redis.call('HMGET', KEYS[1], 'state', 'owner')
if h[1] == 'running' and h[2] == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# Keys also carry a Redis TTL (the logical expiry plus this grace), so abandoned keys go away.
_GRACE_MS = 60_000


class RedisStore:
    """Redis (several hosts). Each operation is one Lua script, atomic on the server."""

    def __init__(self, url: str, prefix: str = "blameset:idem:") -> None:
        import redis  # only services that choose Redis need the client

        self.url = url
        self.prefix = prefix
        self._client = redis.Redis.from_url(url)
        self._begin = self._client.register_script(_BEGIN)
        self._complete = self._client.register_script(_COMPLETE)
        self._release = self._client.register_script(_RELEASE)

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        ttl_ms = int(lease_s * 1000) + _GRACE_MS
        reply: Any = self._begin(
            keys=[self.prefix + key], args=[owner, repr(now), repr(now + lease_s), ttl_ms]
        )
        status = reply[0].decode()
        value = reply[1] if len(reply) > 1 else None
        return Claim(status, value)

    def complete(self, key: str, owner: str, value: bytes, ttl_s: float, now: float) -> bool:
        ttl_ms = int(ttl_s * 1000) + _GRACE_MS
        done: Any = self._complete(
            keys=[self.prefix + key], args=[owner, value, repr(now + ttl_s), ttl_ms]
        )
        return bool(done)

    def release(self, key: str, owner: str) -> None:
        self._release(keys=[self.prefix + key], args=[owner])

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
