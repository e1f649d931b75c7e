"""Attribution quality and speed, against a naive "compare by version" baseline, in one run.

For every scenario of ``bench/scenarios.py`` (seeded; injected causes of known size, component
and time) it runs ``analyze.attribute`` and a naive method (each version_set's requests against its
predecessor's, pooled over all time and routes, Welch z-test per metric at p < 0.05, no correction,
every changed component blamed), then prints:

- recall: injected effects found with the right metric, component(s) and verdict, counted over
  effects at >= 3x the minimum detectable effect (MDE = 2.8 standard errors of the log ratio);
- precision: findings whose component (or ``external``) has an injected cause in its scenario;
- false attributions on the null scenarios (mix shift with a harmless deploy; A/A; harmless
  cutovers at a daily peak, at the trough and in a weekly cycle; a harmless config taken by the
  small tenants of 60 first; tenants that arrive with a deploy; a harmless worker-service
  cutover under an unchanged gateway; a gateway cutover when half the requests reach a worker);
- beside each injected effect, the effect measured and its MDE;
- then seconds and peak RSS to attribute 10 million spans read from Parquet (own process).

Targets (issues 7 and 16): recall >= 97% at >= 3x MDE, precision >= 98%, no false attribution
on the null scenarios, ``confounded`` for every co-released pair, ``external`` for drift, 10M
spans in <= 60 s and <= 4 GB peak RSS.

    .venv/bin/python bench/attribution.py [--requests 20000] [--seeds 3] [--spans 10000000]
        [--engine polars|duckdb|spark]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenarios import SCENARIOS, Scenario, generate, write_dataset
from blameset.analyze._compare import metric_column
from blameset.analyze.attribute import Attribution, request_table
from blameset.analyze.attribute import attribute as run_attribute

NAIVE_METRICS = ("latency_ms", "ttft_ms", "tpot_ms", "input_tokens", "output_tokens", "cost_usd")


@dataclass
class Claim:
    """A finding reduced to what scoring needs."""

    metric: str
    components: tuple[str, ...]
    verdict: str


@dataclass
class Score:
    hits: int = 0
    expected: int = 0
    correct: int = 0
    claims: int = 0
    null_runs: int = 0
    null_false: int = 0
    below_mde: int = 0
    below_found: int = 0

    def line(self) -> str:
        recall = self.hits / self.expected if self.expected else math.nan
        precision = self.correct / self.claims if self.claims else math.nan
        false_rate = self.null_false / self.null_runs if self.null_runs else math.nan
        return (
            f"recall {recall:6.1%} ({self.hits}/{self.expected})  "
            f"precision {precision:6.1%} ({self.correct}/{self.claims})  "
            f"false attribution on nulls {false_rate:6.1%} ({self.null_false}/{self.null_runs})"
            + (
                f"  [under 3x MDE: {self.below_found}/{self.below_mde} found]"
                if self.below_mde
                else ""
            )
        )


def ours(result: Attribution) -> list[Claim]:
    return [
        Claim(metric_column(f.metric), tuple(sorted(f.components)), f.verdict)
        for f in result.findings
    ]


def naive(result: Attribution, spans: pl.DataFrame) -> list[Claim]:
    """Compare by version: every episode's candidate against its baseline over all their
    requests, unstratified, uncorrected."""
    requests = request_table(spans.lazy())
    claims = []
    for episode in result.episodes:
        base = requests.filter(pl.col("version_set_id") == episode.baseline)
        cand = requests.filter(pl.col("version_set_id") == episode.candidate)
        for metric in NAIVE_METRICS:
            b = base[metric].drop_nulls().cast(pl.Float64).to_numpy()
            c = cand[metric].drop_nulls().cast(pl.Float64).to_numpy()
            if len(b) < 30 or len(c) < 30 or b.mean() <= 0:
                continue
            se = math.sqrt(b.var() / len(b) + c.var() / len(c))
            z = (c.mean() - b.mean()) / se if se > 0 else 0.0
            ratio = c.mean() / b.mean()
            if math.erfc(abs(z) / math.sqrt(2)) < 0.05 and abs(math.log(ratio)) >= math.log(1.05):
                verdict = "regression" if ratio > 1 else "improvement"
                claims.append(Claim(metric, tuple(sorted(episode.components)), verdict))
    return claims


def mde_ratio(
    result: Attribution, metric: str, components: tuple[str, ...], verdict: str
) -> tuple[float, float, float]:
    """Injected effect size over the minimum detectable effect (2.8 standard errors of the log
    ratio), from the test of this metric in the episode that changed these components (the
    external test for drift), in the injected direction; with that test's effect and MDE."""
    best, effect, mde = 0.0, math.nan, math.nan
    for test in result.tests:
        if test["metric"] not in (metric, f"{metric}.mean"):
            continue
        if tuple(sorted(test["components"])) != components:
            continue
        if (test["episode"] == "external") != (not components):
            continue
        if verdict in ("regression", "improvement") and (test["effect"] > 1) != (
            verdict == "regression"
        ):
            continue
        lo, hi = test["ci"]
        if lo <= 0 or hi <= 0 or test["effect"] <= 0:
            continue
        se = (math.log(hi) - math.log(lo)) / 3.92
        if se > 0 and abs(math.log(test["effect"])) / (2.8 * se) > best:
            best = abs(math.log(test["effect"])) / (2.8 * se)
            effect, mde = test["effect"], test.get("mde", math.expm1(2.8 * se))
    return best, effect, mde


def score(scenario: Scenario, claims: list[Claim], result: Attribution, into: Score) -> list[str]:
    """Recall over injected effects at >= 3x MDE; a claim is right when its component set (or
    `external`) is one an effect was injected on (a model change legitimately moves several
    metrics); on a null scenario any claim naming a component is a false attribution."""
    notes = []
    causes = {t[1] for t in scenario.truth}
    for metric, components, verdict in scenario.truth:
        size, effect, mde = mde_ratio(result, metric, components, verdict)
        found = any(
            c.metric == metric and c.components == components and c.verdict == verdict
            for c in claims
        )
        if size >= 3:
            into.expected += 1
            into.hits += found
        else:
            into.below_mde += 1
            into.below_found += found
        what = "/".join(components) or "external"
        notes.append(
            f"{metric}:{what} x{effect:.3f} (MDE {mde:.1%}) {size:.0f}xMDE "
            + ("found" if found else "MISSED")
        )
    for c in claims:
        into.claims += 1
        right = c.components in causes or (c.verdict == "external" and () in causes)
        into.correct += right
        if not right:
            notes.append(f"WRONG {c.verdict} {c.metric} ({'/'.join(c.components)})")
    if scenario.null:
        into.null_runs += 1
        into.null_false += any(c.components for c in claims)
    return notes


def engine_requests(spans: pl.DataFrame, engine: str, folder: Path) -> pl.DataFrame | None:
    """The request table as ``engine`` rolls it up from the spans stored by ingest's writer
    (None for polars: attribute rolls the spans up in memory itself)."""
    if engine == "polars":
        return None
    from blameset.analyze import engine as engines
    from blameset.analyze._dataset import StagedDataset

    with StagedDataset(folder) as staged:
        staged.write(spans)
        staged.commit()
    return engines.request_table(folder, engine)  # type: ignore[arg-type]


def quality(requests: int, seeds: int, engine: str = "polars") -> None:
    ours_score, naive_score = Score(), Score()
    print(f"request roll-up: {engine}")
    print(f"{'scenario':<26} {'seed':>4} {'ours':>5} {'naive':>5}  seconds  injected effects")
    for name, scenario in SCENARIOS.items():
        for seed in range(seeds):
            spans = generate(scenario, requests, seed)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="blameset-attr-") as tmp:
                rows = engine_requests(spans, engine, Path(tmp) / "dataset")
            result = run_attribute(spans, seed=seed, requests=rows)
            took = time.perf_counter() - started
            mine = ours(result)
            theirs = naive(result, spans)
            notes = score(scenario, mine, result, ours_score)
            score(scenario, theirs, result, naive_score)
            print(
                f"{name:<26} {seed:>4} {len(mine):>5} {len(theirs):>5}  {took:7.2f}  "
                + ("; ".join(notes) or "(null scenario)")
            )
    print()
    print(f"ours : {ours_score.line()}")
    print(f"naive: {naive_score.line()}")


def scale(spans_target: int, engine: str = "polars") -> None:
    with tempfile.TemporaryDirectory(prefix="blameset-attr-") as tmp:
        folder = Path(tmp) / "dataset"
        started = time.perf_counter()
        requests = int(spans_target / 2.23)
        spans = generate("overlapping", requests, 11)
        n_spans = spans.height
        write_dataset(spans, folder)
        del spans
        print(
            f"\n{n_spans:,} spans ({requests:,} requests) written to Parquet in "
            f"{time.perf_counter() - started:.1f} s"
        )
        run = (
            f"a = analyze.attribute(analyze.load({str(folder)!r}))\n"
            if engine == "polars"
            else "from blameset.analyze import engine\n"
            f"rows = engine.request_table({str(folder)!r}, {engine!r})\n"
            "a = analyze.attribute(pl.LazyFrame(), requests=rows)\n"
        )
        code = (
            "import sys, time\n"
            "import polars as pl\n"
            "from blameset import analyze\n"
            "t = time.perf_counter()\n" + run + "took = time.perf_counter() - t\n"
            # VmHWM, not ru_maxrss: after fork + exec, ru_maxrss starts from the parent's RSS
            # (Linux keeps the old mm's high-water mark), and the parent holds the 10M spans
            "rss = next(int(l.split()[1]) for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')) / 1024\n"
            "print(f'{took:.1f} {rss:.0f} {len(a.findings)}')\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        took, rss, findings = out.stdout.strip().splitlines()[-1].split()
        print(
            f"attribute 10M-scale ({engine}): {float(took):.1f} s (target <= 60 s), "
            f"peak RSS {float(rss):,.0f} MB (target <= 4096 MB), {findings} findings"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--spans", type=int, default=10_000_000, help="0 skips the scale run")
    parser.add_argument(
        "--engine",
        choices=("polars", "duckdb", "spark"),
        default="polars",
        help="where the scenarios' request roll-up runs (duckdb, spark: from a stored dataset)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    quality(args.requests, args.seeds, args.engine)
    if args.spans:
        scale(args.spans, args.engine)


if __name__ == "__main__":
    main()
