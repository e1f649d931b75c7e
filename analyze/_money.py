"""Money as money: the one formatter every report, the judge and the HTML page print USD with.
An LLM request costs fractions of a cent, so cents are the wrong unit: below a dollar an amount
keeps three significant digits (``$0.0056``, ``$0.0108``), and a non-zero amount never reads
``$0.00``."""

from __future__ import annotations

import math

__all__ = ["usd"]


def usd(amount: float | None, *, sign: bool = False, digits: int = 3) -> str:
    """``amount`` in US dollars: cents from a dollar up (``$1,234.50``), ``digits`` significant
    digits below (``$0.0056``, trailing zeros dropped down to cents); ``sign`` adds ``+`` for a
    positive amount (a change). ``None`` or NaN is ``-``."""
    if amount is None or math.isnan(amount):
        return "-"
    if math.isinf(amount):
        return ("-" if amount < 0 else "+" if sign else "") + "$inf"
    prefix = "-" if amount < 0 else ("+" if sign and amount > 0 else "")
    size = abs(amount)
    if size == 0:
        return "$0.00"
    if size >= 1:
        return f"{prefix}${size:,.2f}"
    decimals = max(2, digits - 1 - math.floor(math.log10(size)))
    text = f"{size:.{decimals}f}"
    if float(text) >= 1:  # rounding carried it to a dollar
        return f"{prefix}${size:,.2f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{prefix}${whole}.{frac}"
