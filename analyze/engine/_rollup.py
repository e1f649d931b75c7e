"""The request roll-up (docs/rollup.md), defined once as SQL both DuckDB and Spark SQL accept.

Why SQL text (and not SQLGlot or Ibis): the roll-up is projections, group-bys, an anti-join
and a few joins, all in the SQL both engines share (``CASE``, ``COALESCE``,
``FILTER (WHERE ...)`` on aggregates, ``min_by`` over structs, ``bool_or``, ``GREATEST``).
What differs is small: how a name is quoted, a string written and a struct built, the 64-bit
hash, a non-negative modulo, a regular-expression match and how a time becomes nanoseconds.
Those are the :class:`Dialect`'s; everything else is one text. The text that runs is the text in
this file (readable, ``EXPLAIN``-able in either engine); a transpiler would be a dependency whose
output still has to be tested against both engines, and Ibis brings pandas and lags behind
Spark's releases in its PySpark backend.

The steps, as the polars path (``analyze.table.requests``) takes them:

1. :func:`spans_sql`: the columns the rules read, times as int64 nanoseconds, the span's roles
   (LLM, usage, tool, queue, ours, a request span). Spans are keyed by (trace id, span id)
   themselves, not by hashes: DuckDB's ``hash()`` of low-entropy ids collides (sequential
   trace ids: 4.6M distinct, 3.5M hashes), and the engines hash and spill text keys anyway.
2. :func:`per_trace_sql`, one pass over the spans grouped by trace, joining nothing and with
   no text in any aggregate's state: the sums of the LLM spans (every one counted), tool and
   queue time, the first call's model as a code (:func:`models_sql`), the number of LLM spans,
   and whether the request span (rule 3) is the trace's one request span.
3. The LLM roles (rule 2) in the traces with more than one LLM span, the only ones where one
   LLM span can lie above another: :func:`links_sql` and one :func:`walk_step_sql` per level
   of parent links (the runner loops, ``_run.llm_roles``), :func:`roles_sql` (``repeat``: an LLM
   span above records usage; ``wrapper``: an LLM span lies beneath), and :func:`fixes_sql`, those
   traces' LLM sums again with the roles. Traces with no request span (a root is picked, which
   may be an orphan) or several (the first started, the longest on a tie, then by span id) are
   picked by :func:`orphans_sql`, over those traces' spans alone.
4. :func:`rollup_sql`: the request span's columns joined back (by trace id from the request
   spans alone, or by the span id :func:`orphans_sql` picked), and the request table's fills
   over that, traces kept apart left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._tree import PROBE_ROUTE

__all__ = [
    "FILES",
    "FIXES",
    "INPUT_TYPES",
    "LABELS",
    "LINKS",
    "MODELS",
    "ORPHANS",
    "PER",
    "PER_FIXED",
    "ROLES",
    "SPANS",
    "Dialect",
    "fixed_per_sql",
    "fixes_sql",
    "links_sql",
    "models_sql",
    "orphans_sql",
    "per_trace_sql",
    "request_columns",
    "roles_sql",
    "rollup_sql",
    "spans_sql",
    "visits_sql",
    "walk_start_sql",
    "walk_step_sql",
]

FILES = "blameset_files"
"""The view over the dataset's Parquet files (columns unioned by name), the runner's to make."""
SPANS = "blameset_spans"
"""The view of the span columns the roll-up reads, with nanosecond times, roles and keys."""
LINKS = "blameset_links"
"""The parent links of the traces with more than one LLM span (materialized)."""
ROLES = "blameset_roles"
"""Per LLM span of those traces: ``repeat`` and ``wrapper`` (materialized)."""
PER = "blameset_per_trace"
"""One row per trace: its sums and its request span (materialized; :func:`per_trace_sql`)."""
ORPHANS = "blameset_orphans"
"""Per trace whose request span the one pass could not tell, that span (materialized;
:func:`orphans_sql`)."""
FIXES = "blameset_fixes"
"""Per trace with several LLM spans, its LLM sums with the roles (materialized;
:func:`fixes_sql`)."""
PER_FIXED = "blameset_per_fixed"
"""The view of :data:`PER` with :data:`FIXES` applied (:func:`fixed_per_sql`)."""
MODELS = "blameset_models"
"""The distinct models of the spans and an integer code for each (materialized;
:func:`models_sql`)."""

INPUT_TYPES: Mapping[str, str] = {
    "trace_id": "STRING",
    "span_id": "STRING",
    "parent_span_id": "STRING",
    "name": "STRING",
    "service": "STRING",
    "span_kind": "STRING",
    "operation": "STRING",
    "status": "STRING",
    "route": "STRING",
    "tenant_id": "STRING",
    "version_set": "STRING",
    "version_set_id": "STRING",
    "model": "STRING",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "cost_usd": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "tool_ms": "DOUBLE",
    "queue_ms": "DOUBLE",
    "total_ms": "DOUBLE",
    "duration_ms": "DOUBLE",
    "final_status": "STRING",
    "error_code": "STRING",
}
"""The span columns the roll-up reads and their SQL types; a column no file holds reads as a
NULL of its type (as a polars scan of a table without it would have none to read)."""

LABELS = ("route", "tenant_id", "version_set", "version_set_id", "final_status", "error_code")
"""Text columns of the request table held as categoricals (with ``model`` and the versions)."""

_ZERO = "CAST(0 AS DOUBLE)"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the engines; everything else is one SQL text."""

    name: str
    quote: Callable[[str], str]
    string: Callable[[str], str]
    """A string literal (Spark reads backslashes in one as escapes, DuckDB does not)."""
    hash: Callable[..., str]
    """A 64-bit hash of one or more expressions, for the random groups and the fallback model
    codes (DuckDB ``hash(md5(...))``, Spark ``xxhash64``)."""
    code: Callable[[str], str]
    """A fast 64-bit code of a text, for few distinct texts (a span's model): the runner checks
    that the data's texts get distinct codes (``_run.prepare``)."""
    modulo: Callable[[str, int], str]
    """A non-negative ``expr mod k`` of a hash."""
    matches: Callable[[str, str], str]
    """Whether a text matches a regular expression (RE2 in DuckDB, Java's in Spark)."""
    nanos: Callable[[str, str], str]
    """Nanoseconds since the epoch of a time column given its kind (``int``, ``ns``, ``us``)."""
    struct: Callable[[list[tuple[str, str]]], str]
    """A struct of (field, expression) pairs (DuckDB ``struct_pack``, Spark ``named_struct``):
    the order ``MIN_BY`` picks a trace's request span by, field by field, where a trace has
    several candidates (:func:`orphans_sql`)."""
    trace_key: Callable[[str], str] | None = None
    """A trace id as a fixed-width integer (DuckDB: 32 hex digits as a ``UHUGEINT``), for the
    data whose every trace id is 32 lowercase hex digits (``_run.prepare`` checks); None: the
    engine keys traces by their text."""
    earliest_code: Callable[[str, str, str], str] = lambda code, start, where: (
        f"MIN_BY({code}, {start}) FILTER (WHERE {where})"
    )
    """The 64-bit code (a model's) of the earliest-started row ``where`` holds, as an
    aggregate: ``MIN_BY`` unless the engine has a cheaper exact form (DuckDB's)."""


def _roles() -> list[str]:
    usage = "(input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR cost_usd IS NOT NULL)"
    llm = (
        f"(COALESCE(span_kind = 'llm', FALSE) OR (span_kind IS NULL AND ({usage} "
        "OR model IS NOT NULL)))"
    )
    return [
        f"{usage} AS has_usage",
        f"{llm} AS is_llm",
        "(COALESCE(span_kind = 'tool', FALSE) OR COALESCE(operation = 'execute_tool', FALSE))"
        " AS is_tool",
        "COALESCE(span_kind = 'queue', FALSE) AS is_queue",
        "COALESCE(span_kind = 'request', FALSE) AS is_request",
        "(span_kind IS NOT NULL) AS is_ours",
    ]


def spans_sql(
    d: Dialect,
    columns: Mapping[str, str],
    versions: list[str],
    *,
    strong_codes: bool = False,
    int_keys: bool = False,
) -> str:
    """The span view: the files' columns the rules read (NULL where no file holds one), times
    in ns, keys and roles. ``columns``: every column the files hold -> its kind (``int``,
    ``ns``, ``us`` for times; anything else for the rest). ``model_code`` is the model's
    integer code (:func:`models_sql`): the engine's fast hash, or with ``strong_codes`` the
    salted :attr:`Dialect.hash` (MD5-based in DuckDB), for the data whose models the fast hash
    does not tell apart. ``int_keys``: ``trace_id`` is :attr:`Dialect.trace_key` of the text
    (the caller has checked every trace id is one); ``trace_text`` is the text either way."""
    q = d.quote
    values = {c: q(c) if c in columns else f"CAST(NULL AS {t})" for c, t in INPUT_TYPES.items()}
    picked = [f"{v} AS {q(c)}" for c, v in values.items()]
    picked.append(f"{values['trace_id']} AS trace_text")
    if int_keys:
        assert d.trace_key is not None
        picked[0] = f"{d.trace_key(values['trace_id'])} AS {q('trace_id')}"
    picked += [f"CAST({q(v)} AS STRING) AS {q(v)}" for v in versions]
    if "start_time_unix_nano" in columns:  # the Delta layout: exact nanoseconds stored as int64
        start, end = q("start_time_unix_nano"), q("end_time_unix_nano")
    else:  # the earlier layout: nanosecond timestamps (Spark reads them as int64)
        start = d.nanos(q("start"), columns.get("start", "ns"))
        end = d.nanos(q("end"), columns.get("end", "ns"))
    picked += [f"{start} AS start_ns", f"{end} AS end_ns"]
    inner = "SELECT " + ",\n    ".join(picked) + f"\n  FROM {FILES}"
    code = d.hash("model", d.string("blameset")) if strong_codes else d.code("model")
    keys = [
        "COALESCE(duration_ms, CAST(end_ns - start_ns AS DOUBLE) / 1e6) AS dur",
        f"CASE WHEN model IS NOT NULL THEN {code} END AS model_code",
    ]
    return f"SELECT *, {', '.join(keys + _roles())}\nFROM (\n  {inner}\n) AS projected"


def links_sql() -> str:
    """The spans of the traces holding more than one LLM span (from :data:`PER`): only there
    can one LLM span lie above another. Their parent links for the walk, and what an LLM span
    adds up to for :func:`fixes_sql`."""
    return f"""
SELECT trace_id, span_id, parent_span_id, is_llm, has_usage, (is_request AND NOT is_llm) AS stop,
  start_ns, dur, input_tokens, output_tokens, cost_usd, ttft_ms, model_code
FROM {SPANS}
WHERE trace_id IN (SELECT trace_id FROM {PER} WHERE llm_spans > 1)"""


def walk_start_sql() -> str:
    """One walker per LLM span with a parent: where it stands (``at``), the nearest LLM span
    met above (``nearest``) and whether one met records usage (``repeat``)."""
    return (
        "SELECT trace_id, span_id AS walker, parent_span_id AS at_id, "
        "CAST(NULL AS STRING) AS nearest, "
        "FALSE AS covered "
        f"FROM {LINKS} WHERE is_llm AND parent_span_id IS NOT NULL"
    )


def walk_step_sql(walkers: str) -> str:
    """One level up: each walker reads the span it stands on. ``done`` when that span is
    missing from the data, a request span (usage never crosses one), the root, or when both
    answers are known (an LLM span met and usage above)."""
    return f"""
SELECT trace_id, walker, next_at AS at_id, nearest, covered,
  (NOT found OR stop OR next_at IS NULL OR (nearest IS NOT NULL AND covered)) AS done
FROM (
  SELECT w.trace_id, w.walker,
    l.span_id IS NOT NULL AS found,
    COALESCE(l.stop, FALSE) AS stop,
    l.parent_span_id AS next_at,
    COALESCE(w.nearest, CASE WHEN l.is_llm THEN w.at_id END) AS nearest,
    (w.covered OR COALESCE(l.is_llm AND l.has_usage, FALSE)) AS covered
  FROM {walkers} AS w
  LEFT JOIN {LINKS} AS l ON l.trace_id = w.trace_id AND l.span_id = w.at_id
) AS stepped"""


def roles_sql(finished: str) -> str:
    """Per LLM span of the linked traces: ``repeat`` and ``wrapper`` (the nearest LLM span
    above some LLM span: not itself a call to a provider)."""
    return f"""
SELECT l.trace_id, l.span_id, COALESCE(f.covered, FALSE) AS is_repeat,
  (o.nearest IS NOT NULL) AS is_wrapper
FROM {LINKS} AS l
LEFT JOIN {finished} AS f ON f.trace_id = l.trace_id AND f.walker = l.span_id
LEFT JOIN (
  SELECT DISTINCT trace_id, nearest FROM {finished} WHERE nearest IS NOT NULL
) AS o ON o.trace_id = l.trace_id AND o.nearest = l.span_id
WHERE l.is_llm"""


_OWN = [
    "start_ns",
    "end_ns",
    "span_id",
    "name",
    "route",
    "tenant_id",
    "version_set",
    "version_set_id",
    "total_ms",
    "duration_ms",
    "ttft_ms",
    "tool_ms",
    "queue_ms",
    "final_status",
    "status",
    "error_code",
    "service",
]
"""The request span's own columns a request row reads (with the version columns)."""

_LAST = "CAST(9223372036854775807 AS BIGINT)"
_FIRST = "CAST(-9223372036854775807 AS BIGINT)"
"""A missing start sorts first where the polars path sorts a service's spans by start (its
nulls first), last where rule 3 orders the candidate request spans."""


def _pick_key(d: Dialect, rank: str) -> str:
    """The order of a trace's candidate request spans (rule 3): ``rank`` (a request span before
    a root), the first started, the longest on a tie, then the span id; missing times last, in
    both engines alike."""
    return d.struct(
        [
            ("rank", rank),
            ("start_ns", f"COALESCE(start_ns, {_LAST})"),
            ("neg_end", f"COALESCE(-end_ns, {_LAST})"),
            ("span_id", "COALESCE(span_id, '')"),
        ]
    )


def models_sql() -> str:
    """Each distinct model of the spans with its integer code (the span view's
    ``model_code``): the per-trace pass carries the code, not the text (see
    :func:`per_trace_sql`), and the request table reads the text back from here."""
    return (
        "SELECT model, MIN(model_code) AS model_code "
        f"FROM {SPANS} WHERE model IS NOT NULL GROUP BY model"
    )


def _D(column: str) -> str:
    """A token count summed as a double: exact up to 2**53 tokens in a trace, and the sum's
    state half the size of a 64-bit integer sum's (a 128-bit one in DuckDB), which is what
    spills: the per-trace pass of 30M spans under a 2 GB limit took 0.8x the CPU with these
    sums and the flags of :func:`per_trace_sql` together."""
    return f"CAST({column} AS DOUBLE)"


def _llm_sums(d: Dialect, counted: str, calls: str) -> list[str]:
    """What a trace's LLM spans add up to, ``counted`` saying which spans' usage counts and
    ``calls`` which spans are calls: the columns :func:`fixes_sql` redoes with the roles."""
    streamed = f"{counted} AND ttft_ms IS NOT NULL"
    model = d.earliest_code("model_code", "start_ns", f"{counted} AND model_code IS NOT NULL")
    if counted != "is_llm":  # no counted call names a model: the first LLM span's
        fallback = d.earliest_code("model_code", "start_ns", "is_llm AND model_code IS NOT NULL")
        model = f"COALESCE(\n    {model},\n    {fallback}\n  )"
    return [
        f"CAST(COALESCE(SUM({_D('input_tokens')}) FILTER (WHERE {counted}), 0) AS BIGINT) "
        "AS input_tokens",
        f"CAST(COALESCE(SUM({_D('output_tokens')}) FILTER (WHERE {counted}), 0) AS BIGINT) "
        "AS output_tokens",
        f"COALESCE(SUM(cost_usd) FILTER (WHERE {counted}), {_ZERO}) AS cost_usd",
        f"CAST(COUNT(*) FILTER (WHERE {calls}) AS BIGINT) AS llm_calls",
        f"COALESCE(SUM(GREATEST(dur - ttft_ms, {_ZERO})) FILTER (WHERE {streamed} "
        f"AND dur IS NOT NULL), {_ZERO}) AS generation_ms",
        f"CAST(COALESCE(SUM({_D('output_tokens')}) FILTER (WHERE {streamed}), 0) AS BIGINT) "
        "AS generation_tokens",
        f"{model} AS llm_model_code",
    ]


FIXED = (
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "llm_calls",
    "generation_ms",
    "generation_tokens",
    "llm_model_code",
)
"""The columns of :data:`PER` that :func:`fixes_sql` redoes for the traces with LLM roles."""


def per_trace_sql(d: Dialect) -> str:
    """One row per trace, in one pass over the spans: what its LLM, tool and queue spans add up
    to, what the ``apart`` rule reads, and whether its request span is its one request span
    (``pick``). Traces with none (a root is picked, and a root may be an orphan) or several (the
    first started, the longest on a tie, then the span id) are left to :func:`orphans_sql`.

    Every LLM span counts here, as it does in a trace with one LLM span; the few traces with
    several (``llm_spans > 1``), where one LLM span may wrap or repeat another (rule 2), get
    their LLM sums redone by :func:`fixes_sql`. So the pass joins nothing (each span was joined
    to its roles and its model's code), and the traces to walk come from this pass, not from a
    group-by of their own: the whole roll-up of 10M spans went from 17.8 s to 15.7 s of CPU, of
    30M spans (under a 2.5 GB limit) from 63 s to 57 s.

    No aggregate here holds text (the model is carried as its code): DuckDB's hash aggregate
    slows down as a whole once one of its states holds a string, measured 2x on this query at
    10M spans and 3x at 30M under a 2 GB limit, where it spills. For the same reason the four
    flags are one ``BIT_OR`` of a bit mask, read apart outside the aggregate."""
    sums = ",\n  ".join(_llm_sums(d, "is_llm", "is_llm"))
    flags = " | ".join(f"(CASE WHEN {cond} THEN {bit} ELSE 0 END)" for cond, bit in _FLAGS.values())
    named = ",\n  ".join(f"((flags & {bit}) <> 0) AS {name}" for name, (_, bit) in _FLAGS.items())
    return f"""
SELECT trace_id,
  {", ".join(c for c in (*FIXED, "llm_spans", "first_ttft", "tool_sum", "queue_sum"))},
  {named},
  pick
FROM (
SELECT trace_id,
  {sums},
  CAST(COUNT(*) FILTER (WHERE is_llm) AS BIGINT) AS llm_spans,
  MIN_BY(ttft_ms, start_ns) FILTER (WHERE is_llm AND ttft_ms IS NOT NULL
    AND start_ns IS NOT NULL) AS first_ttft,
  COALESCE(SUM(dur) FILTER (WHERE is_tool), {_ZERO}) AS tool_sum,
  COALESCE(SUM(dur) FILTER (WHERE is_queue), {_ZERO}) AS queue_sum,
  BIT_OR({flags}) AS flags,
  (COUNT(*) FILTER (WHERE is_request) = 1) AS pick
FROM {SPANS}
GROUP BY trace_id
) AS aggregated"""


_FLAGS = {
    "any_ours": ("is_ours", 1),
    "any_llm": ("is_llm", 2),
    "any_versioned": ("version_set IS NOT NULL", 4),
    "has_request": ("is_request", 8),
}
"""What a trace has any of (:func:`per_trace_sql`), each a bit of one ``BIT_OR``."""


def fixes_sql(d: Dialect) -> str:
    """Per trace of :data:`LINKS` (several LLM spans), its LLM sums with rule 2's roles: usage
    counted once per call (not on a ``repeat``), a ``wrapper`` no call."""
    sums = ",\n  ".join(
        _llm_sums(
            d,
            "is_llm AND NOT COALESCE(is_repeat, FALSE)",
            "is_llm AND NOT COALESCE(is_wrapper, FALSE)",
        )
    )
    return f"""
SELECT l.trace_id AS trace_id,
  {sums}
FROM (
  SELECT l.*, r.is_repeat AS is_repeat, r.is_wrapper AS is_wrapper FROM {LINKS} AS l
  LEFT JOIN {ROLES} AS r ON r.trace_id = l.trace_id AND r.span_id = l.span_id
  WHERE l.is_llm
) AS l
GROUP BY l.trace_id"""


def fixed_per_sql() -> str:
    """:data:`PER` with the LLM sums of :data:`FIXES` where a trace has them."""
    kept = ", ".join(f"p.{c}" for c in _PER_KEPT)
    redone = ", ".join(f"COALESCE(f.{c}, p.{c}) AS {c}" for c in FIXED)
    return (
        f"SELECT {kept}, {redone} FROM {PER} AS p LEFT JOIN {FIXES} AS f ON f.trace_id = p.trace_id"
    )


_PER_KEPT = (
    "trace_id",
    "llm_spans",
    "first_ttft",
    "tool_sum",
    "queue_sum",
    "any_ours",
    "any_llm",
    "any_versioned",
    "has_request",
    "pick",
)


def orphans_sql(d: Dialect) -> str:
    """Per trace of :data:`PER` without a ``pick``: the span id of its request span (rule 3). Of
    its request spans, or when it has none of its roots (spans with no parent,
    or whose parent is missing from the data: orphans), the first started, the longest on a
    tie, then by span id. Only those traces' spans are read, so a dataset of blameset's own
    spans, one request span a trace, pays nothing for this. A missing span id reads as ''
    here and in the join back (broken data still has its request; ``MIN_BY`` would skip it)."""
    key = _pick_key(d, "CASE WHEN is_request THEN 0 ELSE 1 END")
    subset = (
        f"(SELECT s.trace_id, s.span_id, s.parent_span_id, s.start_ns, s.end_ns, s.is_request, "
        f"t.has_request FROM {SPANS} AS s "
        f"JOIN (SELECT trace_id, has_request FROM {PER} WHERE NOT pick) AS t "
        "ON t.trace_id = s.trace_id)"
    )
    return f"""
SELECT trace_id, MIN_BY(COALESCE(span_id, ''), {key}) AS pick
FROM {subset} AS s
WHERE s.is_request OR (NOT s.has_request AND (s.parent_span_id IS NULL OR NOT EXISTS (
  SELECT 1 FROM {subset} AS p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id
)))
GROUP BY trace_id"""


def request_columns(versions: list[str]) -> list[str]:
    """The request table's columns, in :func:`analyze.request_table`'s order."""
    return [
        "start",
        "route",
        "tenant_id",
        "version_set",
        "version_set_id",
        *versions,
        "latency_ms",
        "ttft_ms",
        "tool_ms",
        "queue_ms",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "llm_calls",
        "final_status",
        "error_code",
        "model",
        "tpot_ms",
    ]


def visits_sql() -> str:
    """Per (trace, service), what the service did in the trace (``analyze._services``): its
    version set (its earliest span's that has one), the time of its entry spans (those whose
    parent is another service's, or missing), its tool spans' time, and whether any of its
    spans failed (1.0 or 0.0). Only run when the spans name more than one service."""
    return f"""
SELECT s.trace_text AS _trace, s.service AS service,
  MIN_BY(s.version_set, COALESCE(s.start_ns, {_FIRST})) FILTER (WHERE s.version_set IS NOT NULL)
    AS vs,
  COALESCE(SUM(s.dur) FILTER (WHERE COALESCE(p.service <> s.service, TRUE)), {_ZERO})
    AS service_ms,
  COALESCE(SUM(s.dur) FILTER (WHERE s.is_tool), {_ZERO}) AS tool_ms,
  CAST(BOOL_OR(COALESCE(s.status = 'error', FALSE)) AS DOUBLE) AS error_rate
FROM {SPANS} AS s
LEFT JOIN (SELECT trace_id, span_id, service FROM {SPANS}) AS p
  ON p.trace_id = s.trace_id AND p.span_id = s.parent_span_id
WHERE s.service IS NOT NULL
GROUP BY s.trace_text, s.service"""


def rollup_sql(
    d: Dialect,
    versions: list[str],
    *,
    orphans: bool,
    order: bool = True,
    keyed: bool = False,
    random_key: bool = False,
    per: str = PER,
) -> str:
    """One row per trace of :data:`PER` with its request span's columns, joined back on the
    trace id (and on the span id picked in :data:`ORPHANS` when ``orphans``): the request
    table's columns
    (``start`` as int64 ns) and ``apart``, a trace that is no traffic (no blameset span, no LLM
    span, and unversioned or a probe route), which the request table leaves out and the report
    counts by route. ``keyed``: each row also has its trace id (``_trace``) and its request span's
    ``service``, for the visits of other services (:func:`visits_sql`) to join. ``per``: the
    per-trace table to read (:data:`PER_FIXED` when some trace has LLM roles).
    ``random_key``: each row also has ``request_key``, the 64-bit hash of its trace id the
    random groups of :mod:`.aggregates` are cut by; the request table has no use for it, and
    hashing every trace id (an MD5 in DuckDB) cost 0.1x of the join back at 10M spans."""
    q = d.quote
    text = ["trace_text"] if keyed or random_key else []  # only read where asked: text is heavy
    own = ", ".join(f"r.{c}" for c in [*_OWN, *text, *(q(v) for v in versions)])
    # the common case: a trace with one request span, whose row is that span's; only the
    # request spans are read to join (and the join is on the trace id alone)
    branches = [
        f"SELECT t.*, {own} FROM {per} AS t\n"
        f"  JOIN (SELECT * FROM {SPANS} WHERE is_request) AS r ON r.trace_id = t.trace_id\n"
        "  WHERE t.pick"
    ]
    if orphans:
        branches.append(
            f"SELECT t.*, {own} FROM {per} AS t\n"
            f"  JOIN {ORPHANS} AS o ON o.trace_id = t.trace_id\n"
            f"  JOIN {SPANS} AS r ON r.trace_id = t.trace_id AND COALESCE(r.span_id, '') = o.pick"
        )
    source = (
        "(\n" + "\nUNION ALL\n".join(branches) + "\n) AS x\n"
        f"LEFT JOIN {MODELS} AS mm ON mm.model_code = x.llm_model_code"
    )
    route = "COALESCE(x.route, x.name)"
    select = [
        "x.start_ns AS start",
        *([f"{d.hash('x.trace_text')} AS request_key"] if random_key else []),
        f"{route} AS route",
        "COALESCE(x.tenant_id, '') AS tenant_id",
        "x.version_set AS version_set",
        "COALESCE(x.version_set_id, 'unversioned') AS version_set_id",
        *(f"x.{q(v)} AS {q(v)}" for v in versions),
        "COALESCE(x.total_ms, x.duration_ms) AS latency_ms",
        "COALESCE(x.ttft_ms, x.first_ttft) AS ttft_ms",
        f"COALESCE(x.tool_ms, x.tool_sum, {_ZERO}) AS tool_ms",
        f"COALESCE(x.queue_ms, CASE WHEN x.queue_sum > 0 THEN x.queue_sum END, {_ZERO}) "
        "AS queue_ms",
        "x.input_tokens AS input_tokens",
        "x.output_tokens AS output_tokens",
        "x.cost_usd AS cost_usd",
        "x.llm_calls AS llm_calls",
        "COALESCE(x.final_status, CASE WHEN x.status = 'error' THEN 'failure' "
        "ELSE 'success' END) AS final_status",
        "x.error_code AS error_code",
        "mm.model AS model",
        "CASE WHEN x.generation_tokens > 0 THEN x.generation_ms / x.generation_tokens END "
        "AS tpot_ms",
    ]
    if keyed:
        select += ["x.trace_text AS _trace", "x.service AS service"]
    # a CASE, not an AND: the engines evaluate the route's regular expression only for the
    # traces with no blameset span and no LLM span (an AND ran it on every route: 0.1x of the
    # join back at 10M spans)
    probe = d.matches(route, PROBE_ROUTE)
    apart = (
        "CASE WHEN COALESCE(x.any_ours, FALSE) OR COALESCE(x.any_llm, FALSE) THEN FALSE "
        f"ELSE (NOT COALESCE(x.any_versioned, FALSE) OR COALESCE({probe}, FALSE)) END"
    )
    sql = "SELECT " + ",\n  ".join([*select, f"{apart} AS apart"]) + f"\nFROM {source}"
    return sql + "\nORDER BY start" if order else sql
