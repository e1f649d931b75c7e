"""How often the canary judge says FAIL when nothing changed, looked at again and again.

On the A/A scenario of ``bench/scenarios.py`` (a 50/50 split of two identical version_sets), for
each of many seeds the judge runs on 20 growing prefixes of the data (the first 5%, 10%, ... of
the two days), as a pipeline polling it would; a seed counts as a false alarm when any of its 20
looks says FAIL. Three rates:

- the judge with its default limits (+5% cost and tokens, +10% p95s, +1pp errors);
- the judge with every limit at 0 (FAIL as soon as the sequence says "worse at all"): the
  harshest reading, where the nominal rate ``alpha`` is the bound to hold;
- a fixed-sample z-interval per look on the same mix-adjusted means (Bonferroni over metrics,
  limits 0): what peeking does to a test that is not sequential.

    .venv/bin/python bench/judge.py [--seeds 200] [--requests 10000] [--looks 20]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenarios import generate
from blameset.analyze import request_table
from blameset.analyze._judge_stats import stratified_mean
from blameset.analyze.judge import DEFAULT_LIMITS, Limit, judge

CANDIDATE, BASELINE = "config=t0.7b", "config=t0.7"
ZERO = {m: Limit(0.0, limit.relative) for m, limit in DEFAULT_LIMITS.items()}
_NAIVE_METRICS = {
    "cost_usd.mean": "cost_usd",
    "input_tokens.mean": "input_tokens",
    "output_tokens.mean": "output_tokens",
}


def _naive_fail(table: pl.DataFrame, alpha: float) -> bool:
    """A fixed-sample one-sided z-test per mean metric (limit 0), Bonferroni over them."""
    z = statistics.NormalDist().inv_cdf(1 - alpha / (2 * len(DEFAULT_LIMITS)))
    key = pl.concat_str(["route", "tenant_id"], separator="|")
    cand = table.filter(pl.col("version.config") == "t0.7b")
    base = table.filter(pl.col("version.config") == "t0.7")
    names = sorted(set(cand.select(key).to_series()) | set(base.select(key).to_series()))
    code = {k: i for i, k in enumerate(names)}
    kb = np.array([code[k] for k in base.select(key).to_series()], dtype=np.int64)
    kc = np.array([code[k] for k in cand.select(key).to_series()], dtype=np.int64)
    for column in _NAIVE_METRICS.values():
        sm = stratified_mean(
            base[column].to_numpy().astype(float),
            kb,
            cand[column].to_numpy().astype(float),
            kc,
            rate=False,
        )
        if sm is None:
            continue
        point, var = sm.effect(True)
        if point - z * math.sqrt(var) > 0:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--looks", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    alarms = {"default limits": 0, "limits 0": 0, "fixed-sample z, limits 0": 0}
    passes = 0
    started = time.perf_counter()
    for seed in range(args.seeds):
        table = request_table(generate("aa", args.requests, seed=seed).lazy())
        times = table["start"].dt.epoch("ns")
        t0, span = int(times.min()), int(times.max()) - int(times.min())  # type: ignore[arg-type]
        hit = dict.fromkeys(alarms, False)
        for k in range(1, args.looks + 1):
            prefix = table.filter(pl.col("start").dt.epoch("ns") <= t0 + span * k // args.looks)
            for label, limits in (("default limits", DEFAULT_LIMITS), ("limits 0", ZERO)):
                if hit[label] and label != "default limits":
                    continue
                result = judge(
                    None, CANDIDATE, BASELINE, limits=limits, alpha=args.alpha, requests=prefix
                )
                hit[label] |= result.decision == "FAIL"
                if label == "default limits" and k == args.looks:
                    passes += result.decision == "PASS"
            if not hit["fixed-sample z, limits 0"]:
                hit["fixed-sample z, limits 0"] = _naive_fail(prefix, args.alpha)
        for label, was in hit.items():
            alarms[label] += was
    seconds = time.perf_counter() - started
    print(
        f"A/A, {args.seeds} seeds x {args.looks} looks on growing prefixes of {args.requests:,} "
        f"requests, alpha {args.alpha} ({seconds:.0f} s)"
    )
    for label, n in alarms.items():
        rate = n / args.seeds
        bound = "" if label.startswith("fixed") else f"  (nominal <= {args.alpha:.0%})"
        print(f"  false FAIL, {label:<26} {rate:6.1%} ({n}/{args.seeds}){bound}")
    print(f"  PASS at the last look, default limits: {passes / args.seeds:.0%}")


if __name__ == "__main__":
    main()
