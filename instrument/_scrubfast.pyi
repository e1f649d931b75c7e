"""Types of the scrubber's native check (instrument/_scrubfast.c)."""

from typing import Any

def clean(
    span: Any,
    plain_keys: set[str],
    clean_strings: set[str],
    seen_names: dict[str, str],
    resource: Any,
) -> bool: ...
