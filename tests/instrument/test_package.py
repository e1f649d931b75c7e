"""The package as services see it: the contract names, and an import that stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from blameset.instrument import contract

DESIGN_NAMES = {
    "service.name",
    "service.version",
    "deployment.environment.name",
    "blameset.version_set",
    "blameset.version_set.id",
    "gen_ai.operation.name",
    "blameset.span.kind",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "blameset.cost.usd",
    "blameset.cost.source",
    "gen_ai.response.time_to_first_chunk",
    "blameset.latency.ttft_ms",
    "blameset.latency.tool_ms",
    "blameset.latency.queue_ms",
    "blameset.latency.total_ms",
    "blameset.final_status",
    "error.type",
    "blameset.error.retryable",
    "blameset.tenant.id",
    "user.id",
    "blameset.actor",
    "blameset.action_id",
    "blameset.idempotency.hit",
    "blameset.boundary",
    "http.route",
    "gen_ai.tool.name",
    "gen_ai.tool.call.id",
}


def test_contract_holds_every_name_of_the_design_table():
    """Each attribute name of DESIGN.md's table is a constant of instrument.contract."""
    values = {
        getattr(contract, n) for n in contract.__all__ if isinstance(getattr(contract, n), str)
    }
    assert values >= DESIGN_NAMES
    assert contract.version_attribute("prompt") == "blameset.version.prompt"
    assert contract.FINAL_STATUSES == ("success", "failure", "degraded", "blocked")


def test_import_is_light(tmp_path: Path) -> None:
    """Importing instrument loads neither the analysis stack, nor the OTel SDK, nor genai-prices."""
    code = (
        "import sys, blameset.instrument\n"
        "heavy = ['polars', 'plotly', 'typer', 'rich', 'genai_prices', 'opentelemetry.sdk']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    # Run elsewhere than the checkout, whose folder `instrument/` would import as a top-level
    # package of its own: the test is of the installed blameset.instrument.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"
