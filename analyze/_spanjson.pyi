"""Types of the native decoder (analyze/_spanjson.c)."""

from collections.abc import Sequence

class Columns:
    """Decoded span columns; ``pl.Series(columns)`` takes them (once) as a struct series."""

    @property
    def rows(self) -> int: ...
    def __arrow_c_array__(
        self, requested_schema: object | None = None
    ) -> tuple[object, object]: ...

def decode(
    data: bytes, layout: str, attribute_keys: Sequence[str], resource_keys: Sequence[str]
) -> Columns | str: ...
def set_rules(
    *,
    kind_by_number: Sequence[str],
    kind_by_name: Sequence[tuple[str, str]],
    flat_kinds: Sequence[str],
    status_by_number: Sequence[str],
    status_by_name: Sequence[tuple[str, str]],
    trace_id_bytes: int,
    span_id_bytes: int,
) -> None: ...
def count_lines(data: bytes) -> int: ...
