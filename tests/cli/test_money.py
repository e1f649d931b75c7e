"""Money as money everywhere it is printed: report, attribute, judge and the HTML page never show
a non-zero cost as 0.00 (an LLM request costs fractions of a cent), and the one formatter keeps
enough digits to tell amounts apart."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blameset.analyze import usd
from blameset.cli.app import app

runner = CliRunner()
ZERO_COST = re.compile(r"(?<![0-9.])[-+]?\$?0\.00(?![0-9%]|pp)")
"""0.00 not part of a longer number, a percentage or percentage points: the old ``price -0.00``
and ``$ total 0.00`` as well as ``$0.00``."""


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0.0056, "$0.0056"),
        (0.0108, "$0.0108"),
        (0.00004, "$0.00004"),
        (0.5, "$0.50"),
        (1234.5, "$1,234.50"),
        (-0.00123, "-$0.00123"),
        (0.0, "$0.00"),
    ],
)
def test_the_formatter_keeps_significant_digits_below_a_dollar(amount: float, text: str) -> None:
    """Three significant digits below a dollar, cents above; only zero reads $0.00."""
    assert usd(amount) == text


def test_a_change_carries_its_sign() -> None:
    """sign=True marks a rise with + (a fall has its -)."""
    assert usd(0.0052, sign=True) == "+$0.0052"
    assert usd(-0.0052, sign=True) == "-$0.0052"


def _text_of(page: Path) -> str:
    """The page as a reader sees it: scripts and tags out."""
    source = page.read_text(encoding="utf-8")
    source = re.sub(r"<script.*?</script>", "", source, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", source))


def test_no_printed_cost_reads_zero(dataset: Path, tmp_path: Path) -> None:
    """report, attribute and judge tables and the HTML page: every cost they print is non-zero
    here, and none reads 0.00."""
    page = tmp_path / "report.html"
    outputs = {
        "report": runner.invoke(app, ["report", str(dataset), "--html", str(page)]),
        "report by route": runner.invoke(app, ["report", str(dataset), "--by", "route,prompt"]),
        "attribute": runner.invoke(app, ["attribute", str(dataset)]),
        "judge": runner.invoke(app, ["judge", str(dataset), "--candidate", "prompt=outline@v4"]),
    }
    assert outputs["judge"].exit_code == 1, outputs["judge"].output
    texts = {k: v.output for k, v in outputs.items()} | {"html": _text_of(page)}
    for name, text in texts.items():
        assert "$" in text or "USD" in text, f"{name} prints no cost"
        assert not ZERO_COST.findall(text), f"{name}: {ZERO_COST.findall(text)}"
    assert re.search(r"\$0\.0\d{2}", texts["judge"]), "the judge prints cost per request"
    assert re.search(r"\$0\.0\d{2}", texts["html"]), "the page prints cost per request"
