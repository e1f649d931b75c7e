"""Scrub secrets and personal data from text before it is recorded.

Default patterns: provider API keys, JWTs, bearer and basic credentials, ``api_key=...`` style
pairs (in prose, headers or JSON), credentials inside URLs, PEM private keys, e-mail addresses.
Users add their own (customer ids, phone numbers). Each match becomes ``[REDACTED:<kind>]`` so a
reader still sees that something was there and what it was.

Every pattern runs in linear time (no nested or overlapping repeats; a run is only tried from its
start), and is skipped outright when its literal anchor is absent, so a 60 KB attachment costs
milliseconds, not seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["Redactor"]

# A token worth hiding has a digit or a symbol in it; plain words ("The bearer instrument",
# "Token: completion") are left alone.
_SECRETISH = r"(?=[^\s\"',;]*[0-9_./+=~!@#$%^&*-])"

# (kind, pattern, anchor): the pattern runs only when the anchor (lower-cased) is in the text.
_DEFAULTS: tuple[tuple[str, str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        "private key",
    ),
    ("credentials", r"(?<=://)[^/\s:@]{0,256}:[^/\s@]{1,256}(?=@)", "://"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+", "eyj"),
    ("bearer", r"(?i)(?P<keep>\bbearer\s++)" + _SECRETISH + r"[A-Za-z0-9._~+/=-]{8,}+", "bearer"),
    ("basic", r"(?i)(?P<keep>\bbasic\s++)" + _SECRETISH + r"[A-Za-z0-9+/=]{8,}+", "basic"),
    ("api_key", r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}+", "sk-"),
    ("api_key", r"\bAKIA[0-9A-Z]{16}\b", "akia"),
    ("api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", "aiza"),
    ("api_key", r"\bgh[pousr]_[A-Za-z0-9]{30,}+", "gh"),
    ("api_key", r"\bxox[abposr]-[A-Za-z0-9-]{10,}+", "xox"),
    (
        "api_key",
        r"(?i)(?P<keep>(?<![A-Za-z0-9])(?:api[_-]?key|secret|token|password|passwd|pwd)"
        r"[\"']?\s*+[:=]\s*+[\"']?)(?:" + _SECRETISH + r"[^\s\"',;]{6,}+|[^\s\"',;]{16,}+)",
        "",
    ),
    (
        "email",
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@(?:[A-Za-z0-9-]+\.)+"
        r"(?!(?:png|jpe?g|gif|svg|webp|ico|css|js)\b)[A-Za-z]{2,}\b",
        "@",
    ),
)


class Redactor:
    """Replaces every match of its patterns in a string; built once, called per value."""

    def __init__(self, extra: Iterable[str | re.Pattern[str]] = ()) -> None:
        self._extra = [re.compile(pattern) for pattern in extra]
        self._patterns: list[tuple[str, re.Pattern[str], str]] | None = None

    def __call__(self, text: str) -> str:
        if self._patterns is None:  # compiled on first use: configure() and imports stay quick
            self._patterns = [(kind, re.compile(p), anchor) for kind, p, anchor in _DEFAULTS]
            self._patterns += [("custom", p, "") for p in self._extra]
        lowered = text.lower()
        for kind, pattern, anchor in self._patterns:
            if anchor and anchor not in lowered:
                continue
            mark = f"[REDACTED:{kind}]"
            if "keep" in pattern.groupindex:  # keep the label ("Bearer "), hide the value
                text = pattern.sub(_keeping(mark), text)
            else:
                text = pattern.sub(mark, text)
        return text


def _keeping(mark: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group("keep") + mark

    return replace
