"""The redactor on adversarial inputs: 1 MB must take ~10x what 100 KB takes (linear), not 100x.

Each input repeats a fragment that makes one pattern start a match attempt at almost every
position (credential names without values, BEGIN lines without END, half e-mails, digit runs,
"://" without "@", long unbroken runs). A backtracking pattern shows as a ratio far above 10.

    .venv/bin/python bench/redact.py
"""

from __future__ import annotations

import time

from blameset.instrument._redact import Redactor

FRAGMENTS = {
    "unbroken run": "a",
    "names, no values": "password=secret=token=api_key:",
    "pem, no end": "-----BEGIN PRIVATE KEY-----\nMIIE ",
    "half e-mails": "a.b-c@d.",
    "many @": "a@",
    "digit runs": "4111 1111 1111 111",
    "urls, no @": "x://u:",
    "bearer, no token": "Bearer Bearer bearer ",
    "jwt prefixes": "eyJabcde.eyJabcde.",
    "authorization": "Authorization: Authorization=",
    "quoted keys": '"password": "',
    "prose": "The bearer instrument said: token counts 4096, see logo@2x.png. ",
}


def best_of(fn: object, text: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(text)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    redact = Redactor([r"\bC-\d{5}\b"])
    redact("warm up")
    print(f"{'input':<20} {'100 KB':>10} {'1 MB':>10} {'ratio':>7}")
    worst = 0.0
    for name, fragment in FRAGMENTS.items():
        small = (fragment * (100_000 // len(fragment) + 1))[:100_000]
        large = (fragment * (1_000_000 // len(fragment) + 1))[:1_000_000]
        t_small, t_large = best_of(redact, small), best_of(redact, large)
        ratio = t_large / t_small if t_small > 0 else float("nan")
        worst = max(worst, ratio)
        print(f"{name:<20} {t_small * 1e3:>8.1f}ms {t_large * 1e3:>8.1f}ms {ratio:>6.1f}x")
    print(f"worst ratio {worst:.1f}x (linear is ~10x; quadratic would be ~100x)")


if __name__ == "__main__":
    main()
