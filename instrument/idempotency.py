"""Idempotency keys: the side effect of an action runs once, however often the request arrives.

    @idempotent(key=lambda doc_id, **_: f"export:{doc_id}", store="sqlite:/var/lib/app/guard.db")
    def export_document(doc_id: str) -> dict: ...

The first call with a key runs and stores its result (JSON by default); a later call returns the
stored result (span attribute ``blameset.idempotency.hit``); a call arriving while the first runs
waits for it (bounded) or gets :class:`DuplicateInProgress` (code ``IN_PROGRESS``); a failure is
not stored unless asked, so a retry can run again; a holder that crashed loses its lease after
``lease_s``. Without ``key``, the ``action_id`` of the request context is the key.

The lease must outlast the work: a call still running when its lease ends can be started again
elsewhere (the store then refuses the first one's result, and says so in a warning).

A store that lost its records (a Redis restarted without persistence, or flushed: see
:class:`~blameset.instrument.stores.RedisStore`) would make every key look new; calls then fail
closed with :class:`~blameset.instrument.stores.StoreStateLost` (code ``INTERNAL``) instead of
running the work again.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

from opentelemetry import trace

from . import contract
from ._context import current_context
from .errors import (
    BlamesetError,
    DuplicateInProgress,
    Internal,
    InvalidInput,
    exception_class,
)
from .stores import Claim, Store, StoreStateLost, open_store

__all__ = ["JsonSerializer", "Serializer", "dedupe_key", "idempotent"]

logger = logging.getLogger("blameset")

F = TypeVar("F", bound=Callable[..., Any])


class Serializer(Protocol):
    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """Results as JSON (the default): readable in the store, safe to load."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


_FAILURE = "__blameset_failure__"


def dedupe_key(prompt: str, model_config: Mapping[str, Any], action_id: str | None = None) -> str:
    """The model-call dedupe key: sha256 over prompt + model config + action_id (the book's
    "Prompt Hash + Model Config + Action ID"). Config key order does not matter."""
    payload = json.dumps(
        {"prompt": prompt, "model": dict(model_config), "action_id": action_id},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


class _Idempotency:
    def __init__(
        self,
        fn: Callable[..., Any],
        key: Callable[..., str] | None,
        store: Store | str,
        namespace: str | None,
        lease_s: float,
        wait_s: float,
        poll_s: float,
        result_ttl_s: float,
        store_failures: bool,
        serializer: Serializer,
        clock: Callable[[], float],
    ) -> None:
        self.fn = fn
        self.key = key
        self._store_spec = store
        self._store: Store | None = None
        self.namespace = namespace or f"{fn.__module__}.{fn.__qualname__}"
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.ttl_s = result_ttl_s
        self.store_failures = store_failures
        self.serializer = serializer
        self.clock = clock

    @property
    def store(self) -> Store:
        if self._store is None:  # opened at first call: decoration stays cheap, forks stay safe
            self._store = open_store(self._store_spec)
        return self._store

    def key_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        raw: str | None
        if self.key is not None:
            raw = self.key(*args, **kwargs)
        else:
            raw = current_context().action_id
            if not raw:
                raise InvalidInput(
                    f"{self.namespace} is idempotent by action_id, but the request has none "
                    "(set request_context(action_id=...) or give idempotent(key=...))"
                )
        return f"{self.namespace}:{raw}"

    def outcome(self, key: str, claim: Claim) -> Any:
        """The stored result of a finished call (raising its stored failure, if one was kept)."""
        _mark(hit=True, key=key)
        value = self.serializer.loads(claim.value or b"null")
        if isinstance(value, dict) and value.get(_FAILURE):
            raise exception_class(value["code"])(value.get("message"))
        return value

    def begin(self, key: str, owner: str) -> Claim:
        """The store's answer; a store that cannot answer fails the call closed (INTERNAL):
        running the effect without the guard could repeat it."""
        try:
            return self.store.begin(key, owner, self.lease_s, self.clock())
        except BlamesetError:
            raise
        except Exception as exc:
            raise Internal(f"idempotency store unavailable for {key!r}: {exc}") from exc

    def store_result(self, key: str, owner: str, value: Any) -> None:
        """Store the result of work that ran. Never raises: the work is done, and its caller
        gets its result; what could not be stored is logged (and kept from running again)."""
        try:
            data = self.serializer.dumps(value)
        except Exception as exc:
            logger.error(
                "blameset: idempotency key %r: the result (%s) cannot be serialised (%s); "
                "repeats will get an INTERNAL error instead of running the work again "
                "(give idempotent(serializer=...) one that can store it)",
                key,
                type(value).__name__,
                exc,
            )
            data = self.serializer.dumps(
                {_FAILURE: True, "code": "INTERNAL", "message": f"result of {key!r} not stored"}
            )
        try:
            stored = self.store.complete(key, owner, data, self.ttl_s, self.clock())
        except StoreStateLost as exc:
            logger.error(
                "blameset: idempotency key %r: the work ran but its result was not stored: %s",
                key,
                exc,
            )
            return
        except Exception:
            logger.exception(
                "blameset: idempotency key %r: storing the result failed; repeats within the "
                "lease get IN_PROGRESS, later ones run the work again",
                key,
            )
            return
        if not stored:
            logger.warning(
                "blameset: idempotency key %r: lease of %.1f s ran out before the work finished; "
                "its result was not stored (raise lease_s above the longest call)",
                key,
                self.lease_s,
            )

    def failed(self, key: str, owner: str, exc: BaseException) -> None:
        """The work raised: free the key (or store the failure). Never raises over ``exc``."""
        try:
            if self.store_failures and isinstance(exc, Exception):
                # Replayed as its taxonomy code; an exception without one replays as INTERNAL.
                code = exc.error_code if isinstance(exc, BlamesetError) else "INTERNAL"
                message = (
                    str(exc) if isinstance(exc, BlamesetError) else f"{type(exc).__name__}: {exc}"
                )
                self.store_result(key, owner, {_FAILURE: True, "code": code, "message": message})
            else:
                self.store.release(key, owner)
        except Exception:
            logger.exception("blameset: idempotency key %r: releasing it failed", key)

    def in_progress(self, key: str) -> DuplicateInProgress:
        error: DuplicateInProgress = DuplicateInProgress(
            f"idempotency key {key!r} is still being processed"
        )
        return error


def _mark(*, hit: bool, key: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(contract.IDEMPOTENCY_HIT, hit)


def idempotent(
    key: Callable[..., str] | None = None,
    *,
    store: Store | str = "memory",
    namespace: str | None = None,
    lease_s: float = 60.0,
    wait_s: float = 10.0,
    poll_s: float = 0.05,
    result_ttl_s: float = 24 * 3600.0,
    store_failures: bool = False,
    serializer: Serializer | None = None,
    clock: Callable[[], float] = time.time,
) -> Callable[[F], F]:
    """Run the decorated function once per key; see the module docstring.

    ``key`` gets the call's arguments; ``namespace`` (default: the function's qualified name)
    keeps keys of different functions apart; ``wait_s`` bounds how long a duplicate waits for
    the first call (0: raise :class:`DuplicateInProgress` at once).
    """

    def decorate(fn: F) -> F:
        guard = _Idempotency(
            fn,
            key,
            store,
            namespace,
            lease_s,
            wait_s,
            poll_s,
            result_ttl_s,
            store_failures,
            serializer or JsonSerializer(),
            clock,
        )
        if inspect.iscoroutinefunction(fn):
            import asyncio

            @functools.wraps(fn)
            async def run_once_async(*args: Any, **kwargs: Any) -> Any:
                k = guard.key_of(args, kwargs)
                owner = _owner()
                deadline = time.monotonic() + guard.wait_s
                # Store calls run in a thread: a busy SQLite file or a slow Redis must not stall
                # the event loop.
                while True:
                    claim = await asyncio.to_thread(guard.begin, k, owner)
                    if claim.status == "done":
                        return guard.outcome(k, claim)
                    if claim.status == "acquired":
                        break
                    if time.monotonic() >= deadline:
                        raise guard.in_progress(k)
                    await asyncio.sleep(guard.poll_s)
                _mark(hit=False, key=k)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    await asyncio.to_thread(guard.failed, k, owner, exc)
                    raise
                await asyncio.to_thread(guard.store_result, k, owner, result)
                return result

            return cast(F, run_once_async)

        @functools.wraps(fn)
        def run_once(*args: Any, **kwargs: Any) -> Any:
            k = guard.key_of(args, kwargs)
            owner = _owner()
            deadline = time.monotonic() + guard.wait_s
            while True:
                claim = guard.begin(k, owner)
                if claim.status == "done":
                    return guard.outcome(k, claim)
                if claim.status == "acquired":
                    break
                if time.monotonic() >= deadline:
                    raise guard.in_progress(k)
                time.sleep(guard.poll_s)
            _mark(hit=False, key=k)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                guard.failed(k, owner, exc)
                raise
            guard.store_result(k, owner, result)
            return result

        return cast(F, run_once)

    return decorate
