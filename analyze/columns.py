"""The span table's columns, each declared once: name, polars type, the kind of value it holds
and, for a column read from attributes, the attribute names that fill it in order of preference.

Everything else derives from :data:`COLUMNS`: the schema (``SPAN_SCHEMA``), the row reader's
extraction and number checks, the fast path's polars expressions and the attribute and resource
keys handed to the native decoder. The OTLP enum mappings (span kind, status) and the id sizes the
readers and the native decoder apply are declared here too, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import polars as pl

from blameset.instrument import contract

__all__ = [
    "ATTRIBUTE_COLUMNS",
    "COLUMNS",
    "COST_ALIASES",
    "FLAT_KINDS",
    "ID_BYTES",
    "KIND_BY_NAME",
    "KIND_BY_NUMBER",
    "SPAN_SCHEMA",
    "STATUS_BY_NAME",
    "STATUS_BY_NUMBER",
    "VERSION_ALIASES",
    "Column",
    "Value",
]


class Value(Enum):
    """What a column holds, which says how every reader turns a raw value into it."""

    TEXT = "text"
    """A string; an attribute of another type is written as ``str()`` gives it."""
    COUNT = "count"
    """An int64 count (tokens): ``int()`` of a JSON integer or a string of digits."""
    NUMBER = "number"
    """A float64 (milliseconds, USD): ``float()`` of a JSON number."""
    ID = "id"
    """An OTLP id as lower-case hex (hex in any case, or base64, on input)."""
    TIME = "time"
    """A UTC datetime (ns) from int64 nanoseconds since the epoch."""
    FLAG = "flag"
    """A boolean."""
    JSON = "json"
    """JSON text (the raw attributes and resource)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the span table.

    ``attributes`` are span attributes and ``resource`` resource attributes that fill it, in
    order: the first that is neither missing, null nor ``""`` wins, span before resource. A
    column with neither is filled by the readers from the span itself (ids, name, times), or
    derived (duration, versions, cost)."""

    name: str
    value: Value
    attributes: tuple[str, ...] = ()
    resource: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.resource and self.value is not Value.TEXT:  # the fast path reads them as text
            raise ValueError(f"column {self.name}: only text is read from the resource")

    @property
    def dtype(self) -> pl.DataType:
        return _DTYPES[self.value]

    @property
    def from_attributes(self) -> bool:
        return bool(self.attributes or self.resource)


_DTYPES: dict[Value, pl.DataType] = {
    Value.TEXT: pl.String(),
    Value.COUNT: pl.Int64(),
    Value.NUMBER: pl.Float64(),
    Value.ID: pl.String(),
    Value.TIME: pl.Datetime("ns", "UTC"),
    Value.FLAG: pl.Boolean(),
    Value.JSON: pl.String(),
}

_TEXT, _COUNT, _NUMBER, _ID, _TIME = Value.TEXT, Value.COUNT, Value.NUMBER, Value.ID, Value.TIME

# Sources of the aliases: OTel GenAI semantic conventions (current and deprecated names),
# OpenInference (Arize Phoenix), Logfire, OpenLIT, Traceloop (OpenLLMetry), Langfuse.
COLUMNS: Final[tuple[Column, ...]] = (
    Column("trace_id", _ID),
    Column("span_id", _ID),
    Column("parent_span_id", _ID),
    Column("name", _TEXT),
    Column("kind", _TEXT),
    Column("span_kind", _TEXT, (contract.SPAN_KIND,)),
    Column("service", _TEXT, resource=(contract.SERVICE_NAME,)),
    Column("start", _TIME),
    Column("end", _TIME),
    Column("duration_ms", _NUMBER),
    Column("status", _TEXT),
    Column("status_message", _TEXT),
    Column("is_root", Value.FLAG),
    Column("route", _TEXT, (contract.HTTP_ROUTE,)),
    Column(
        "operation",
        _TEXT,
        (contract.GEN_AI_OPERATION_NAME, "openinference.span.kind", "traceloop.span.kind"),
    ),
    Column(
        "tenant_id",
        _TEXT,
        (contract.TENANT_ID, "tenant.id", "langfuse.user.id"),
        resource=(contract.TENANT_ID,),
    ),
    Column("version_set", _TEXT),
    Column("version_set_id", _TEXT),
    Column(
        "model",
        _TEXT,
        (
            contract.GEN_AI_RESPONSE_MODEL,
            contract.GEN_AI_REQUEST_MODEL,
            "llm.model_name",  # OpenInference
        ),
    ),
    Column(
        "provider",
        _TEXT,
        (
            contract.GEN_AI_PROVIDER_NAME,
            "gen_ai.system",  # OTel GenAI, deprecated
            "llm.provider",  # OpenInference
            "llm.system",
        ),
    ),
    Column(
        "input_tokens",
        _COUNT,
        (
            contract.GEN_AI_USAGE_INPUT_TOKENS,
            "gen_ai.usage.prompt_tokens",  # OTel GenAI, deprecated
            "llm.token_count.prompt",  # OpenInference
        ),
    ),
    Column(
        "output_tokens",
        _COUNT,
        (
            contract.GEN_AI_USAGE_OUTPUT_TOKENS,
            "gen_ai.usage.completion_tokens",  # OTel GenAI, deprecated
            "llm.token_count.completion",  # OpenInference
        ),
    ),
    Column(
        "cache_read_tokens",
        _COUNT,
        (
            contract.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,  # OTel GenAI, openai-v2, Traceloop
            "gen_ai.usage.cache_read_input_tokens",  # Traceloop, older (and its Anthropic's)
            "llm.token_count.prompt_details.cache_read",  # OpenInference
        ),
    ),
    Column(
        "cache_write_tokens",
        _COUNT,
        (
            contract.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,  # OTel GenAI
            "gen_ai.usage.cache_write.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",  # Traceloop, older
            "llm.token_count.prompt_details.cache_write",  # OpenInference
        ),
    ),
    Column("cost_usd", _NUMBER),
    Column("cost_source", _TEXT),
    Column("ttft_ms", _NUMBER, (contract.LATENCY_TTFT_MS,)),
    Column("tool_ms", _NUMBER, (contract.LATENCY_TOOL_MS,)),
    Column("queue_ms", _NUMBER, (contract.LATENCY_QUEUE_MS,)),
    Column("total_ms", _NUMBER, (contract.LATENCY_TOTAL_MS,)),
    Column("final_status", _TEXT, (contract.FINAL_STATUS,)),
    Column("error_code", _TEXT, (contract.ERROR_TYPE,)),
    Column("action_id", _TEXT, (contract.ACTION_ID,)),
    Column("attributes", Value.JSON),
    Column("resource", Value.JSON),
)
"""The span table's fixed columns, in order; one ``version.<component>`` String column per
component follows them."""

SPAN_SCHEMA: Final[dict[str, pl.DataType]] = {c.name: c.dtype for c in COLUMNS}

ATTRIBUTE_COLUMNS: Final[tuple[Column, ...]] = tuple(c for c in COLUMNS if c.from_attributes)
"""The columns filled from attributes (first non-empty wins)."""

COST_ALIASES: Final[dict[str, str]] = {
    contract.COST_USD: "",  # ours: its source is in blameset.cost.source
    "llm.cost.total": "reported",  # OpenInference
    "operation.cost": "reported",  # Logfire
    "gen_ai.usage.cost": "reported",  # OpenLIT
}
"""Cost attributes, in order, and the cost_source they imply (ours carries its own). A cost that
is not a number is passed over (the next one, or a computed cost, is taken)."""

VERSION_ALIASES: Final[dict[str, str]] = {
    "llm.prompt_template.version": "prompt",  # OpenInference
    "traceloop.prompt.version": "prompt",  # Traceloop
    "traceloop.entity.version": "entity",  # Traceloop workflow/task version
    "langfuse.release": "code",  # Langfuse
    "langfuse.version": "app",  # Langfuse
}
"""Other tools' version attributes -> our version set component."""

# --- the OTLP rules every reader applies --------------------------------------------------------

ID_BYTES: Final[Mapping[str, int]] = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
"""Bytes of each id (twice as many hex digits)."""

FLAT_KINDS: Final[tuple[str, ...]] = ("internal", "server", "client", "producer", "consumer")
"""Span kinds as the table (and the flat JSONL) writes them."""

KIND_BY_NUMBER: Final[tuple[str, ...]] = (
    "internal",  # 0, UNSPECIFIED: reads as internal, as the SDKs treat it
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
)
"""OTLP SpanKind number -> table kind."""

KIND_BY_NAME: Final[Mapping[str, str]] = {
    "SPAN_KIND_UNSPECIFIED": "internal",
    "SPAN_KIND_INTERNAL": "internal",
    "SPAN_KIND_SERVER": "server",
    "SPAN_KIND_CLIENT": "client",
    "SPAN_KIND_PRODUCER": "producer",
    "SPAN_KIND_CONSUMER": "consumer",
}
"""OTLP SpanKind enum name -> table kind (a table kind in any case is taken too)."""

STATUS_BY_NUMBER: Final[tuple[str, ...]] = ("unset", "ok", "error")
"""OTLP StatusCode number -> table status (any other code reads as unset)."""

STATUS_BY_NAME: Final[Mapping[str, str]] = {
    "STATUS_CODE_UNSET": "unset",
    "STATUS_CODE_OK": "ok",
    "STATUS_CODE_ERROR": "error",
}
"""OTLP StatusCode enum name -> table status (any other name reads as unset)."""


def native_rules() -> dict[str, Any]:
    """The rules above as the native decoder takes them (``_spanjson.set_rules``)."""
    return {
        "kind_by_number": KIND_BY_NUMBER,
        "kind_by_name": tuple(KIND_BY_NAME.items()),
        "flat_kinds": FLAT_KINDS,
        "status_by_number": STATUS_BY_NUMBER,
        "status_by_name": tuple(STATUS_BY_NAME.items()),
        "trace_id_bytes": ID_BYTES["trace_id"],
        "span_id_bytes": ID_BYTES["span_id"],
    }
