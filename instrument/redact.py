"""Scrub secrets and personal data from text before it is recorded.

Default patterns: API keys of the common providers, bearer tokens and ``api_key=...`` pairs,
e-mail addresses. Users add their own (customer ids, phone numbers). Each match becomes
``[REDACTED:<kind>]`` so a reader still sees that something was there and what it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["Redactor"]

_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("bearer", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    ("api_key", r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"),
    ("api_key", r"\bAKIA[0-9A-Z]{16}\b"),
    ("api_key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    ("api_key", r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    ("api_key", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    (
        "api_key",
        r"(?i)\b(?:api[_-]?key|secret|token|password)\b(\s*[:=]\s*)[\"']?[^\s\"',;]{6,}",
    ),
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
)


class Redactor:
    """Replaces every match of its patterns in a string; built once, called per value."""

    def __init__(self, extra: Iterable[str | re.Pattern[str]] = ()) -> None:
        self._extra = [re.compile(pattern) for pattern in extra]
        self._patterns: list[tuple[str, re.Pattern[str]]] | None = None

    def __call__(self, text: str) -> str:
        if self._patterns is None:  # compiled on first use: configure() and imports stay quick
            self._patterns = [(kind, re.compile(p)) for kind, p in _DEFAULTS]
            self._patterns += [("custom", p) for p in self._extra]
        for kind, pattern in self._patterns:
            text = pattern.sub(f"[REDACTED:{kind}]", text)
        return text
