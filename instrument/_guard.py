"""The per-request budget guard in force (set by ``Budget.request()``), in its own small module so
the decorators can consult it without importing the budget machinery."""

from __future__ import annotations

import contextvars
from typing import Any

request_guard: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "blameset_request_guard", default=None
)
