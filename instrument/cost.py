"""Pricing one LLM call: the user's override table first, then genai-prices, at a given time.

The one pricing module: the decorators price each call with it, and analyze prices spans that
carry tokens but no cost with it (at the span's own start time). It is pure, not part of
instrument's runtime: no OpenTelemetry, no configuration or global state (a :class:`Pricer`
holds only its own caches), so analyze may import it as it imports ``contract`` (DESIGN.md).

genai-prices is imported on the first call that needs it (it takes ~0.2 s to load), never at import
time of instrument. An unknown model yields no cost and one warning per model, never an exception:
a missing price must not break the service it describes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import contract

__all__ = ["ModelPrice", "Pricer", "Usage"]

logger = logging.getLogger("blameset")

_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """A user's own price for a model (private deployments, negotiated rates), USD per M tokens.

    ``cache_read_mtok`` prices the cached part of the input; when None, cached input tokens cost the
    ``input_mtok`` rate.
    """

    input_mtok: float
    output_mtok: float
    cache_read_mtok: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = usage.cache_read_tokens or 0
        cache_rate = self.input_mtok if self.cache_read_mtok is None else self.cache_read_mtok
        return (
            (usage.input_tokens - cached) * self.input_mtok
            + cached * cache_rate
            + usage.output_tokens * self.output_mtok
        ) / _MTOK


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call, as the OTel GenAI conventions count them (cached and reasoning
    tokens are parts of input and output, not additions)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    def problem(self) -> str | None:
        """Why these counts cannot be priced, or None when they can."""
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        ):
            value = getattr(self, name)
            if value is None and name not in ("input_tokens", "output_tokens"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return f"{name}={value!r} is not a token count (a non-negative integer)"
        cached = (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)
        if cached > self.input_tokens:
            return (
                f"cached tokens ({cached}) exceed input_tokens ({self.input_tokens}): input_tokens "
                "must include cache reads and writes (the OTel GenAI convention; Anthropic's API "
                "reports them apart, so add them up)"
            )
        return None


class Pricer:
    """Turns (model, provider, usage, time) into (cost_usd, cost_source).

    Thread-safe; lookups that miss are remembered so an unknown model costs one warning, once.
    A provider name genai-prices does not know (OTel's ``x_ai``, ``aws.bedrock``, ...) is retried
    without it: genai-prices then picks the provider from the model name.

    ``warn=False`` prices without the warnings (analyze: a trace file's unknown models are not
    the reader's to fix, and the span table shows them unpriced).
    """

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
        *,
        warn: bool = True,
    ) -> None:
        self._warn = warn
        self._overrides: dict[str, ModelPrice] = {}
        for model, price in (overrides or {}).items():
            self._overrides[model.lower()] = (
                price if isinstance(price, ModelPrice) else ModelPrice(**price)
            )
        self._unknown: set[tuple[str, str | None]] = set()  # models genai-prices does not know
        self._warned: set[tuple[str, str | None]] = set()
        self._provider_alias: dict[tuple[str, str | None], str | None] = {}
        self._lock = threading.Lock()
        self._source: str | None = None
        self._linear: dict[tuple[str, str | None, int], _LinearPrice] = {}

    def price(
        self, model: str | None, provider: str | None, usage: Usage, at: datetime | None = None
    ) -> tuple[float | None, str | None]:
        """Cost in USD and its source, or (None, None) when the call cannot be priced.

        Never raises: an unknown model, bad counts or a pricing fault log one warning per model
        and cause, and the call goes on unpriced.
        """
        if not model:
            self._warn_once(("", provider), "no model named on the LLM span; cost not recorded")
            return None, None
        problem = usage.problem()
        if problem is not None:
            self._warn_once(
                (model, problem.split(" ", 1)[0]), "usage of %r not priced: %s", model, problem
            )
            return None, None
        override = self._overrides.get(model.lower())
        if override is not None:
            return override.cost(usage), contract.COST_SOURCE_OVERRIDE
        key = (model, provider)
        if key in self._unknown:
            return None, None
        provider = self._provider_alias.get(key, provider)
        try:
            return self._genai_prices(model, provider, usage, at)
        except LookupError:
            if provider is not None:
                retried = self._retry_without_provider(key, usage, at)
                if retried is not None:
                    return retried
            with self._lock:
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
                self._unknown.add(key)
            self._warn_once(
                key,
                "model %r (provider %r) has no price in genai-prices; cost not recorded "
                "(add it to configure(prices={...}))",
                model,
                key[1],
            )
        except Exception:  # a pricing fault must not reach the service, nor stop later calls
            self._warn_once(
                (model, "fault"),
                "pricing %r failed; this call's cost not recorded",
                model,
                exc_info=True,
            )
        return None, None

    def _retry_without_provider(
        self, key: tuple[str, str | None], usage: Usage, at: datetime | None
    ) -> tuple[float, str] | None:
        try:
            result = self._genai_prices(key[0], None, usage, at)
        except LookupError:
            return None
        self._provider_alias[key] = None
        return result

    def _genai_prices(
        self, model: str, provider: str | None, usage: Usage, at: datetime | None
    ) -> tuple[float, str]:
        import genai_prices  # deferred: ~0.2 s, and only services that price calls need it

        if self._source is None:
            self._source = contract.COST_SOURCE_GENAI_PRICES_PREFIX + genai_prices.__version__
        when = at or datetime.now(UTC)
        price = _price_in_force(model, provider, when)
        if price is None:
            return _exact(model, provider, usage, when), self._source
        # Keyed by the price object genai-prices picked for this moment, so a dated price change
        # or an off-peak window (both exist in its data) switches rates exactly when it should.
        key = (model, provider, id(price))
        linear = self._linear.get(key)
        if linear is None or linear.price is not price:
            linear = _LinearPrice.calibrate(model, provider, when, price)
            with self._lock:
                if len(self._linear) > 4096:
                    self._linear.clear()
                self._linear[key] = linear
        if linear.coefficients is not None:
            return linear.cost(usage), self._source
        return _exact(model, provider, usage, when), self._source

    def _warn_once(
        self, key: tuple[str, str | None], message: str, *args: object, exc_info: bool = False
    ) -> None:
        if not self._warn:
            return
        with self._lock:
            if key in self._warned:
                return
            if len(self._warned) > 10_000:  # model names from user input must not grow memory
                self._warned.clear()
            self._warned.add(key)
        logger.warning("blameset: " + message, *args, exc_info=exc_info)


def _exact(model: str, provider: str | None, usage: Usage, at: datetime) -> float:
    """genai-prices' own calculation (~100 us: it walks its unit registry on every call)."""
    import genai_prices

    counts: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.cache_read_tokens:
        counts["cache_read_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        counts["cache_write_tokens"] = usage.cache_write_tokens
    result = genai_prices.calc_price(
        genai_prices.Usage(**counts), model, provider_id=provider, genai_request_timestamp=at
    )
    return float(result.total_price)


def _price_in_force(model: str, provider: str | None, at: datetime) -> object | None:
    """The price object genai-prices would apply to this call, or None if we cannot tell.

    Raises LookupError for a model genai-prices does not know, like ``calc_price``.
    """
    from genai_prices import data_snapshot

    try:
        snapshot = data_snapshot.get_snapshot()
        _, info = snapshot.find_provider_model(model, None, provider, None)
        price: object = info.get_prices(at)
    except LookupError:
        raise
    except Exception:  # its internals moved: the exact path still works
        return None
    return price


_PROBE = 1_000_000


@dataclass(frozen=True, slots=True)
class _LinearPrice:
    """Per-token rates read off genai-prices for one model, provider and price in force.

    Most prices are linear in (uncached input, output, cache read, cache write) tokens; for those,
    four calls to genai-prices give the rates and each later call is a dot product (~1 us instead
    of ~100 us). The rates are checked against genai-prices on mixed probes; a model whose price
    is not linear (tiers above a context size, say) keeps ``coefficients = None`` and every call
    goes to genai-prices itself. A wrong rate can therefore only cost speed, never correctness.
    """

    coefficients: tuple[float, float, float, float] | None
    price: object = None

    def cost(self, usage: Usage) -> float:
        assert self.coefficients is not None
        a, b, c, d = self.coefficients
        cache_read = usage.cache_read_tokens or 0
        cache_write = usage.cache_write_tokens or 0
        uncached = usage.input_tokens - cache_read - cache_write
        return a * uncached + b * usage.output_tokens + c * cache_read + d * cache_write

    @classmethod
    def calibrate(
        cls, model: str, provider: str | None, at: datetime, price: object
    ) -> _LinearPrice:
        """Rates from four probes, kept only if mixed probes agree with genai-prices.

        Raises LookupError (from genai-prices) for an unknown model, like the exact path.
        """
        exact = _exact
        a = exact(model, provider, Usage(input_tokens=_PROBE), at) / _PROBE
        b = exact(model, provider, Usage(output_tokens=_PROBE), at) / _PROBE
        c = exact(model, provider, Usage(input_tokens=_PROBE, cache_read_tokens=_PROBE), at)
        d = exact(model, provider, Usage(input_tokens=_PROBE, cache_write_tokens=_PROBE), at)
        linear = cls((a, b, c / _PROBE, d / _PROBE), price)
        for probe in (
            Usage(input_tokens=3_700_000, output_tokens=1_300, cache_read_tokens=900_000),
            Usage(input_tokens=1_234, output_tokens=56_789, cache_write_tokens=1_000),
            Usage(input_tokens=250_000, output_tokens=9_000),  # past common tier thresholds
        ):
            want = exact(model, provider, probe, at)
            if abs(linear.cost(probe) - want) > 1e-12 + 1e-9 * abs(want):
                return cls(None, price)
        return linear
