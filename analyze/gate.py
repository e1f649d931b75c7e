"""The design gate of the book's chapter 9: a backend design document must name its idempotency
keys, trace_id, version_set and retry budgets before implementation starts. Chinese or English
terms both count. It checks that the elements are named, not that the design is good: a
sentence saying "there is no idempotency key" names one too, as in the book's own script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REQUIREMENTS", "GateResult", "check_design"]


@dataclass(frozen=True, slots=True)
class Requirement:
    name: str
    patterns: tuple[str, ...]
    why: str


# Boundaries are ASCII-only: Python's \b treats Chinese characters as word characters, so
# "记录trace_id" would not match \btrace_id.
_B = r"(?<![A-Za-z0-9])"
_E = r"(?![A-Za-z0-9])"

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "idempotency key",
        (r"幂等\s*(?:键|key)", _B + r"idempoten\w*[\s_-]*keys?" + _E),
        "core write operations need an idempotency key, or repeated requests repeat side effects",
    ),
    Requirement(
        "trace_id",
        (_B + r"trace[\s_-]?ids?" + _E,),
        "logs must carry trace_id, or a request cannot be followed end to end",
    ),
    Requirement(
        "version_set",
        (_B + r"version[\s_-]?sets?" + _E, r"版本集合"),
        "the version combination must be recorded, or effects cannot be attributed to a change",
    ),
    Requirement(
        "retry budget",
        (r"重试\S{0,4}预算", _B + r"retry[\s_-]?budgets?" + _E),
        "retries need a budget, or an outage becomes a retry storm",
    ),
)


@dataclass(frozen=True, slots=True)
class GateResult:
    path: Path
    missing: tuple[Requirement, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


def check_design(path: str | Path) -> GateResult:
    """Which of the four required elements the document at ``path`` does not name."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    missing = tuple(
        req
        for req in REQUIREMENTS
        if not any(re.search(p, text, flags=re.IGNORECASE) for p in req.patterns)
    )
    return GateResult(file, missing)
