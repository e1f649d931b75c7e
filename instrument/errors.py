"""The error taxonomy: one exception tree, each code carrying what clients and retries need.

    BlamesetError                     every code below; ``to_response()`` gives the HTTP body
     +-- InvalidInput                 INVALID_INPUT      400  none             0
     +-- QuotaExceeded                QUOTA_EXCEEDED     429  backoff          3
     +-- UpstreamTimeout              UPSTREAM_TIMEOUT   504  silent           2  alerts
     +-- BudgetExhausted              BUDGET_EXHAUSTED   402  none             0  alerts, blocked
     +-- SafetyViolation              SAFETY_VIOLATION   403  none             0  alerts, audited
     |    +-- PolicyViolation         (alias POLICY_VIOLATION: reported as SAFETY_VIOLATION)
     +-- DuplicateInProgress          IN_PROGRESS        409  backoff          3
     +-- Internal                     INTERNAL           500  none             0  alerts

The table is data (:data:`CODES`), so ``blameset taxonomy`` prints it and the design doc is
generated from it. Users add codes with :func:`register`. Raised inside a traced span, an error
sets ``error.type`` to its code, ``blameset.error.retryable``, and the request's final status.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "CODES",
    "BlamesetError",
    "BudgetExhausted",
    "DuplicateInProgress",
    "ErrorCode",
    "Internal",
    "InvalidInput",
    "PolicyViolation",
    "QuotaExceeded",
    "RetryPolicy",
    "SafetyViolation",
    "UpstreamTimeout",
    "classify",
    "lookup",
    "register",
    "taxonomy_json",
    "taxonomy_markdown",
]


class RetryPolicy(StrEnum):
    """How a caller (or :func:`instrument.retry`) may retry an error."""

    NONE = "none"
    EXPONENTIAL_BACKOFF = "exponential_backoff"
    SILENT = "silent"
    """Retried by the backend itself, without telling the user (a timeout deep in a call)."""


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One row of the taxonomy."""

    code: str
    http_status: int
    retry_policy: RetryPolicy
    retry_budget: int
    alert: bool
    message_en: str
    message_zh: str
    audited: bool = False
    final_status: str = "failure"
    aliases: tuple[str, ...] = field(default=())

    @property
    def retryable(self) -> bool:
        return self.retry_policy is not RetryPolicy.NONE and self.retry_budget > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "http_status": self.http_status,
            "retry_policy": str(self.retry_policy),
            "retry_budget": self.retry_budget,
            "alert": self.alert,
            "message_en": self.message_en,
            "message_zh": self.message_zh,
            "audited": self.audited,
            "final_status": self.final_status,
            "aliases": list(self.aliases),
        }


CODES: dict[str, ErrorCode] = {}
"""Code -> row, in registration order (aliases resolve through :func:`lookup`)."""
_ALIASES: dict[str, str] = {}
_CLASSES: dict[str, type[BlamesetError]] = {}
_lock = threading.Lock()


class BlamesetError(Exception):
    """Base of every taxonomy error. Subclasses set ``spec``; raise them with a detail message
    for logs (the user-facing message comes from the taxonomy, in English or Chinese)."""

    spec: ClassVar[ErrorCode]

    def __init__(self, detail: str | None = None, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail or self.spec.message_en)
        self.detail = detail
        self.retry_after_s = retry_after_s

    # The attributes instrument.tracing reads from any exception (duck-typed there).
    @property
    def error_code(self) -> str:
        return self.spec.code

    @property
    def retryable(self) -> bool:
        return self.spec.retryable

    @property
    def final_status(self) -> str:
        return self.spec.final_status

    @property
    def http_status(self) -> int:
        return self.spec.http_status

    @property
    def alert(self) -> bool:
        return self.spec.alert

    @property
    def audited(self) -> bool:
        return self.spec.audited

    def message(self, lang: str = "en") -> str:
        """The user message: ``lang`` "zh" for Chinese, anything else English."""
        return self.spec.message_zh if lang.startswith("zh") else self.spec.message_en

    def to_response(self, lang: str = "en") -> dict[str, Any]:
        """The HTTP body ``{code, message, retryable, trace_id}``, trace_id of the current span."""
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        return {
            "code": self.spec.code,
            "message": self.message(lang),
            "retryable": self.spec.retryable,
            "trace_id": f"{ctx.trace_id:032x}" if ctx.is_valid else None,
        }


def register(
    code: str,
    *,
    http_status: int,
    retry_policy: RetryPolicy | str = RetryPolicy.NONE,
    retry_budget: int = 0,
    alert: bool = False,
    message_en: str,
    message_zh: str,
    audited: bool = False,
    final_status: str = "failure",
    aliases: tuple[str, ...] = (),
    base: type[BlamesetError] = BlamesetError,
    name: str | None = None,
) -> type[BlamesetError]:
    """Add a code to the taxonomy and return its exception class.

    ``register("CONTENT_TOO_LONG", http_status=413, message_en=..., message_zh=...)``. A code
    registered twice with the same row returns the existing class; a different row is an error.
    """
    if not code.isupper() or not code.replace("_", "").isalnum():
        raise ValueError(f"error code {code!r} must be UPPER_SNAKE_CASE")
    if final_status not in ("failure", "degraded", "blocked"):
        raise ValueError(f"final_status {final_status!r} must be failure, degraded or blocked")
    spec = ErrorCode(
        code=code,
        http_status=http_status,
        retry_policy=RetryPolicy(retry_policy),
        retry_budget=retry_budget,
        alert=alert,
        message_en=message_en,
        message_zh=message_zh,
        audited=audited,
        final_status=final_status,
        aliases=aliases,
    )
    with _lock:
        existing = CODES.get(code)
        if existing is not None:
            if existing != spec:
                raise ValueError(f"error code {code!r} is already registered with another row")
            return _CLASSES[code]
        if code in _ALIASES:
            raise ValueError(f"error code {code!r} is already an alias of {_ALIASES[code]!r}")
        for alias in aliases:
            if alias in CODES or alias in _ALIASES or alias == code:
                raise ValueError(f"alias {alias!r} is already a code or an alias")
        cls_name = name or "".join(part.title() for part in code.split("_"))
        cls = type(cls_name, (base,), {"spec": spec, "__module__": __name__})
        CODES[code] = spec
        _CLASSES[code] = cls
        for alias in aliases:
            _ALIASES[alias] = code
    return cls


def lookup(code: str) -> ErrorCode:
    """The row of a code or alias; unknown codes give INTERNAL's row."""
    return CODES.get(_ALIASES.get(code, code)) or CODES["INTERNAL"]


def exception_class(code: str) -> type[BlamesetError]:
    """The exception class of a code or alias (INTERNAL's for an unknown one)."""
    return _CLASSES[lookup(code).code]


def _builtin(cls: type[BlamesetError]) -> type[BlamesetError]:
    with _lock:
        CODES[cls.spec.code] = cls.spec
        _CLASSES[cls.spec.code] = cls
        for alias in cls.spec.aliases:
            _ALIASES[alias] = cls.spec.code
    return cls


@_builtin
class InvalidInput(BlamesetError):
    spec = ErrorCode(
        "INVALID_INPUT",
        400,
        RetryPolicy.NONE,
        0,
        False,
        "The input is not valid; please change it and try again.",
        "输入内容不合法",
    )


@_builtin
class QuotaExceeded(BlamesetError):
    spec = ErrorCode(
        "QUOTA_EXCEEDED",
        429,
        RetryPolicy.EXPONENTIAL_BACKOFF,
        3,
        False,
        "Too many requests; please try again shortly.",
        "访问过快，稍后再试",
    )


@_builtin
class UpstreamTimeout(BlamesetError):
    spec = ErrorCode(
        "UPSTREAM_TIMEOUT",
        504,
        RetryPolicy.SILENT,
        2,
        True,
        "The service is busy; please try again later.",
        "服务繁忙，请稍后",
    )


@_builtin
class BudgetExhausted(BlamesetError):
    spec = ErrorCode(
        "BUDGET_EXHAUSTED",
        402,
        RetryPolicy.NONE,
        0,
        True,
        "Today's quota is used up.",
        "今日额度已用完",
        final_status="blocked",
    )


@_builtin
class SafetyViolation(BlamesetError):
    spec = ErrorCode(
        "SAFETY_VIOLATION",
        403,
        RetryPolicy.NONE,
        0,
        True,
        "This request crosses a safety or compliance line.",
        "触碰合规红线",
        audited=True,
        final_status="blocked",
        aliases=("POLICY_VIOLATION",),
    )


class PolicyViolation(SafetyViolation):
    """The book's POLICY_VIOLATION: the same row as SAFETY_VIOLATION (one thing, one code in
    reports), under the name some teams raise."""


@_builtin
class DuplicateInProgress(BlamesetError):
    """The same idempotency key is being processed by another call (see ``idempotent``)."""

    spec = ErrorCode(
        "IN_PROGRESS",
        409,
        RetryPolicy.EXPONENTIAL_BACKOFF,
        3,
        False,
        "The same action is still being processed; its result will be ready shortly.",
        "相同操作正在处理中，请稍后查看结果",
    )


@_builtin
class Internal(BlamesetError):
    """Anything without a code of its own: never a bare 500 with no code."""

    spec = ErrorCode(
        "INTERNAL",
        500,
        RetryPolicy.NONE,
        0,
        True,
        "Something went wrong on our side; we are looking into it.",
        "系统内部错误，我们正在处理",
    )


_BUILTIN_MAP: Mapping[type[BaseException], str] = {TimeoutError: "UPSTREAM_TIMEOUT"}


def classify(exc: BaseException) -> ErrorCode:
    """The taxonomy row of any exception: its own code, a known mapping (TimeoutError ->
    UPSTREAM_TIMEOUT), or INTERNAL, never a bare 500 with no code."""
    code = getattr(exc, "error_code", None)
    if isinstance(code, str) and code:
        return lookup(code)
    for exc_type, mapped in _BUILTIN_MAP.items():
        if isinstance(exc, exc_type):
            return CODES[mapped]
    return CODES["INTERNAL"]


def as_blameset_error(exc: BaseException) -> BlamesetError:
    """``exc`` itself when it is a taxonomy error, else the error of its code, chained to it."""
    if isinstance(exc, BlamesetError):
        return exc
    wrapped = exception_class(classify(exc).code)(f"{type(exc).__name__}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def taxonomy_json() -> list[dict[str, Any]]:
    """The table as JSON-ready rows (``blameset taxonomy --format json``)."""
    return [spec.as_dict() for spec in CODES.values()]


def taxonomy_markdown() -> str:
    """The table as Markdown (``blameset taxonomy --format md``), for the design doc."""
    lines = [
        "| code | HTTP | retry policy | retry budget | alert | final status | message (en) "
        "| message (zh) |",
        "| :--- | :--- | :--- | :--- | :--- | :--- | :--- | :--- |",
    ]
    for spec in CODES.values():
        code = f"`{spec.code}`" + "".join(f" (alias `{a}`)" for a in spec.aliases)
        flags = ("yes" if spec.alert else "no") + (", audited" if spec.audited else "")
        lines.append(
            f"| {code} | {spec.http_status} | {spec.retry_policy} | {spec.retry_budget} | "
            f"{flags} | {spec.final_status} | {spec.message_en} | {spec.message_zh} |"
        )
    return "\n".join(lines) + "\n"
