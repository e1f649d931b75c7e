"""The dataset's transactions, with real ``blameset ingest`` processes: concurrent ingests store
every span exactly once, a ``kill -9`` at any moment leaves a readable dataset that re-running
completes, and a full disk is exit 2 with the dataset as it was.

The rounds here are few so the suite stays fast; ``BLAMESET_STRESS_ROUNDS=10`` runs the issue's
full count (10 of each) and prints what it saw."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest

from blameset.analyze.ingest import load

ROUNDS = int(os.environ.get("BLAMESET_STRESS_ROUNDS", "2"))
"""Rounds of each concurrency case (``BLAMESET_STRESS_ROUNDS=10`` for the issue's count)."""


def write_spans(path: Path, start: int, n: int, *, seed: int = 0) -> set[tuple[str, str]]:
    """n flat JSONL spans numbered from ``start`` (ids derive from the number, so two files
    holding the same numbers hold the same spans); their (trace_id, span_id) keys."""
    rng = random.Random(seed)
    keys = set()
    t0 = 1_767_225_600_000_000_000
    with path.open("w") as f:
        for i in range(start, start + n):
            trace, span = f"{i // 3 + 1:032x}", f"{i + 1:016x}"
            keys.add((trace, span))
            begin = t0 + i * 1_000_000
            f.write(
                json.dumps(
                    {
                        "trace_id": trace,
                        "span_id": span,
                        "parent_span_id": None if i % 3 == 0 else f"{i - i % 3 + 1:016x}",
                        "name": "/v1/outline",
                        "kind": "server",
                        "start_time_unix_nano": begin,
                        "end_time_unix_nano": begin + rng.randint(1_000, 900_000_000),
                        "status": "unset",
                        "resource": {"service.name": "writer-api"},
                        "attributes": {"blameset.version_set": f"code=c{i % 2};model=m"},
                    }
                )
                + "\n"
            )
    return keys


def ingest_cmd(out: Path, *inputs: Path) -> list[str]:
    return [sys.executable, "-m", "blameset.cli", "ingest", *map(str, inputs), "--out", str(out)]


def run_together(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = []
    for c, p in zip(commands, procs, strict=True):
        out, err = p.communicate()
        results.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return results


def stored_keys(out: Path) -> list[tuple[str, str]]:
    frame = load(out).select("trace_id", "span_id").collect()
    return list(frame.iter_rows())


def assert_exactly_once(out: Path, expected: set[tuple[str, str]]) -> None:
    keys = stored_keys(out)
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} spans stored twice"
    assert set(keys) == expected


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, set]]:
    folder = tmp_path_factory.mktemp("inputs")
    a, b, c = folder / "a.jsonl", folder / "b.jsonl", folder / "c.jsonl"
    return {
        "a": (a, write_spans(a, 0, 600)),
        "b": (b, write_spans(b, 600, 600)),  # disjoint from a
        "c": (c, write_spans(c, 300, 600)),  # half a, half b
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [("a", "a"), ("a", "b"), ("a", "c")],
    ids=["same file", "disjoint files", "overlapping inputs"],
)
def test_two_ingests_at_once_store_every_span_exactly_once(tmp_path, inputs, first, second):
    """Two ingests into one dataset at the same time (same, disjoint or overlapping inputs):
    both exit 0 and every span of either is stored once (Delta commit, re-checked on conflict)."""
    for round_ in range(ROUNDS):
        out = tmp_path / f"ds{round_}"
        results = run_together(
            ingest_cmd(out, inputs[first][0]), ingest_cmd(out, inputs[second][0])
        )
        for r in results:
            assert r.returncode == 0, r.stderr
        assert_exactly_once(out, inputs[first][1] | inputs[second][1])
        spans = [int(r.stdout.split()[0]) for r in results]
        assert sum(spans) == len(inputs[first][1] | inputs[second][1])


def _kill_at_random(command: list[str], rng: random.Random, budget: float) -> None:
    """Start the ingest and kill -9 it at a random moment of its usual run (or let it end)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=rng.uniform(0, budget))  # the random moment, not a wait for anything
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _usual_duration(tmp_path: Path, source: Path) -> float:
    import time

    out = tmp_path / f"probe-{uuid.uuid4().hex}"
    t0 = time.perf_counter()
    subprocess.run(ingest_cmd(out, source), check=True, capture_output=True)
    shutil.rmtree(out)
    return time.perf_counter() - t0


def test_a_killed_ingest_leaves_a_readable_dataset_that_re_running_completes(tmp_path, inputs):
    """kill -9 at random moments of an ingest into an empty dataset and of a re-ingest into a
    full one: report reads the dataset afterwards, and re-running stores every span once."""
    rng = random.Random(18)
    source, keys = inputs["a"]
    budget = _usual_duration(tmp_path, source)
    for round_ in range(ROUNDS):
        empty = tmp_path / f"empty{round_}"
        _kill_at_random(ingest_cmd(empty, source), rng, budget)
        if empty.exists() and (empty / "_delta_log").exists():
            subprocess.run(_report(empty), check=True, capture_output=True)
        subprocess.run(ingest_cmd(empty, source), check=True, capture_output=True)
        assert_exactly_once(empty, keys)
        assert _uncommitted(empty) == []

        full = tmp_path / f"full{round_}"
        subprocess.run(ingest_cmd(full, source), check=True, capture_output=True)
        _kill_at_random(ingest_cmd(full, source, inputs["b"][0]), rng, budget)
        report = subprocess.run(_report(full), capture_output=True, text=True)
        assert report.returncode == 0, report.stderr
        subprocess.run(ingest_cmd(full, source, inputs["b"][0]), check=True, capture_output=True)
        assert_exactly_once(full, keys | inputs["b"][1])
        assert _uncommitted(full) == []


def _report(out: Path) -> list[str]:
    return [sys.executable, "-m", "blameset.cli", "report", str(out), "--json"]


def _uncommitted(out: Path) -> list[Path]:
    from blameset.analyze._dataset import committed_files

    return sorted(set(out.glob("day=*/*.parquet")) - set(committed_files(out)))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 20 MB tmpfs (needs mount permission: root, or a user namespace that allows it)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_exit_2_and_leaves_the_dataset_as_it_was(tmp_path, small_disk, inputs):
    """An ingest that fills the disk fails with exit 2 and a sentence that says so; the dataset
    reads as before (same version, same spans) and works again once space is freed."""
    out = small_disk / "ds"
    source, keys = inputs["a"]
    subprocess.run(ingest_cmd(out, source), check=True, capture_output=True)
    before = sorted(stored_keys(out))
    log_before = sorted(p.name for p in (out / "_delta_log").iterdir())
    big = tmp_path / "big.jsonl"
    big_keys = write_spans(big, 10_000, 60_000, seed=1)
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    with filler.open("wb") as f:  # leave less room than the new spans need
        f.write(b"\0" * max(free - 400_000, 0))
    result = subprocess.run(ingest_cmd(out, big), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "no space left" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(stored_keys(out)) == before
    assert sorted(p.name for p in (out / "_delta_log").iterdir() if p.suffix == ".json") == [
        n for n in log_before if n.endswith(".json")
    ]
    assert _uncommitted(out) == []
    filler.unlink()
    subprocess.run(ingest_cmd(out, big), check=True, capture_output=True)
    assert_exactly_once(out, keys | big_keys)


def test_an_old_layout_dataset_is_read_and_upgraded_in_one_commit(tmp_path, inputs):
    """A dataset of the earlier layout (Parquet in day folders, no log) is read as it is, and the
    next ingest into it moves its spans into the Delta table in the same commit as the new ones
    (a span both held and ingested again is stored once)."""
    from blameset.analyze.ingest import ingest

    old = old_layout(tmp_path, inputs["a"][0])
    assert not (old / "_delta_log").exists()
    assert sorted(stored_keys(old)) == sorted(stored_keys(tmp_path / "new"))
    summary = ingest([inputs["c"][0]], old)
    assert summary.upgraded == len(inputs["a"][1])
    assert summary.spans == len(inputs["c"][1] - inputs["a"][1])
    assert summary.version == 0
    assert_exactly_once(old, inputs["a"][1] | inputs["c"][1])
    assert _uncommitted(old) == []
    assert load(old).collect().get_column("start").dtype == pl.Datetime("ns", "UTC")


def old_layout(tmp_path: Path, source: Path) -> Path:
    """A dataset of the earlier layout (hive-partitioned Parquet, no log) holding ``source``'s
    spans (ingested into ``tmp_path/new`` first, then written out as that layout did)."""
    from blameset.analyze.ingest import ingest

    new, old = tmp_path / "new", tmp_path / "old"
    ingest([source], new)
    frame = load(new).collect()
    for (day,), part in frame.partition_by("day", as_dict=True).items():
        (old / f"day={day}").mkdir(parents=True)
        part.drop("day").write_parquet(old / f"day={day}" / f"part-{uuid.uuid4().hex}.parquet")
    return old


def test_two_ingests_upgrading_one_old_layout_dataset_at_once(tmp_path, inputs):
    """Two ingests into one old-layout dataset at the same time (overlapping inputs): both exit
    0, the old spans and both inputs are stored exactly once, one of them carries the old spans
    over, and no old or staged file is left."""
    for round_ in range(ROUNDS):
        folder = tmp_path / f"r{round_}"
        old = old_layout(folder, inputs["a"][0])
        results = run_together(
            [*ingest_cmd(old, inputs["c"][0]), "--json"],
            [*ingest_cmd(old, inputs["b"][0]), "--json"],
        )
        for r in results:
            assert r.returncode == 0, r.stderr
        assert_exactly_once(old, inputs["a"][1] | inputs["b"][1] | inputs["c"][1])
        assert _uncommitted(old) == []
        assert sorted(p.name for p in old.rglob("*.parquet") if p.name.count("-") == 1) == []
        upgraded = [json.loads(r.stdout)["upgraded"] for r in results]
        assert sorted(upgraded) == [0, len(inputs["a"][1])]
