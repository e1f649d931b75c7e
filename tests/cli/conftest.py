"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scenarios import generate, write_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ingested dataset of 6,000 requests with a seeded prompt regression (seed 5)."""
    out = tmp_path_factory.mktemp("ds")
    write_dataset(generate("prompt_regression", 6000, seed=5), out)
    return out
