"""Per-request context (tenant, user, actor, action_id, a version set override) in contextvars.

Contextvars follow ``await`` and asyncio tasks (each task starts with a copy of its creator's
context), ``asyncio.to_thread`` and ``loop.run_in_executor`` with ``contextvars.copy_context()``.
A plain ``ThreadPoolExecutor.submit`` or ``threading.Thread`` starts empty: wrap the callable with
:func:`bind_context`, or carry the context through a queue with :func:`instrument.stamp`.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar

from ._version_set import VersionSet, check_component

__all__ = ["RequestContext", "bind_context", "current_context", "request_context"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who a request is for and which versions serve it. Empty fields are simply not recorded."""

    tenant: str | None = None
    user: str | None = None
    actor: str | None = None
    action_id: str | None = None
    versions: Mapping[str, str | None] | VersionSet | None = None
    """A full VersionSet replaces the configured one; a mapping changes some components of it
    (``{"prompt": "outline@v5"}``; ``None`` removes one)."""


_EMPTY = RequestContext()
request_context_var: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "blameset_request_context", default=_EMPTY
)
"""The context in force; the decorators read it directly (a call saved on every span)."""


def current_context() -> RequestContext:
    """The request context in force here (empty fields when none was set)."""
    return request_context_var.get()


@contextmanager
def request_context(
    *,
    tenant: str | None = None,
    user: str | None = None,
    actor: str | None = None,
    action_id: str | None = None,
    versions: Mapping[str, str | None] | VersionSet | None = None,
) -> Iterator[RequestContext]:
    """Set request context for the block; fields not given keep their outer values.

    Version overrides nest: an inner mapping applies on top of an outer one.
    """
    outer = request_context_var.get()
    changes: dict[str, Any] = {}
    if tenant is not None:
        changes["tenant"] = tenant
    if user is not None:
        changes["user"] = user
    if actor is not None:
        changes["actor"] = actor
    if action_id is not None:
        changes["action_id"] = action_id
    if versions is not None:
        if not isinstance(versions, VersionSet):
            for name, value in versions.items():
                if value is not None:
                    check_component(name, value)  # a bad override fails here, not in every span
        changes["versions"] = _merge_versions(outer.versions, versions)
    ctx = replace(outer, **changes) if changes else outer
    token = request_context_var.set(ctx)
    try:
        yield ctx
    finally:
        request_context_var.reset(token)


def _merge_versions(
    outer: Mapping[str, str | None] | VersionSet | None,
    inner: Mapping[str, str | None] | VersionSet,
) -> Mapping[str, str | None] | VersionSet:
    if isinstance(inner, VersionSet) or outer is None:
        return inner
    if isinstance(outer, VersionSet):
        return outer.replace(**inner)
    return {**outer, **inner}


def resolve_versions(base: VersionSet, ctx: RequestContext) -> VersionSet:
    """The version set a span in this context reports: the configured one, changed by overrides."""
    versions = ctx.versions
    if versions is None:
        return base
    if isinstance(versions, VersionSet):
        return versions
    return _apply(base, tuple(versions.items()))


@functools.lru_cache(maxsize=256)
def _apply(base: VersionSet, changes: tuple[tuple[str, str | None], ...]) -> VersionSet:
    # Cached: spans in overridden requests would otherwise re-hash the same set on every call.
    return base.replace(**dict(changes))


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` to run in a copy of the context of the caller of ``bind_context``.

    For thread pools and callbacks: ``pool.submit(bind_context(work), item)`` keeps the trace,
    the tenant and the version override of the submitting request.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run
