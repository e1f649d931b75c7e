"""The start-up race of issue 17: configure(), then at once a request through the openai client,
in many fresh processes; any failure of the request (such as openai reading a half-imported
``httpx2`` that blameset's price warm-up was importing on another thread) is counted.

Run by hand, not in CI (200 processes take a few minutes on two cores):

    .venv/bin/python bench/startup_race.py [--processes 200] [--parallel 2]

Exit 0 when every process served its request, 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import sys
from blameset import instrument
instrument.configure(service="race", exporter="jsonl:" + sys.argv[2])
import openai  # the application's own imports, while blameset starts up
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="test", max_retries=0)
reply = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
)
assert reply.choices[0].message.content
instrument.shutdown()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()

    from tests.integration import standins

    server = standins.start()
    failures: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:

        def one(i: int) -> str | None:
            done = subprocess.run(
                [sys.executable, "-c", CHILD, server.url, f"{tmp}/spans-{i}.jsonl"],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if done.returncode != 0:
                return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "exit"
            return None

        with ThreadPoolExecutor(args.parallel) as pool:
            failures.extend(e for e in pool.map(one, range(args.processes)) if e is not None)
    server.close()
    elapsed = time.monotonic() - started
    print(
        f"{len(failures)} failures in {args.processes} fresh processes "
        f"({elapsed:.0f} s, {args.parallel} at a time)"
    )
    for error in sorted(set(failures)):
        print(f"  {failures.count(error)} x {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
