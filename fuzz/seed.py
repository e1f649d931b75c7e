"""Seed the fuzz corpus from the real fixtures: each JSON-lines file's lines, a few at a time,
prefixed by the layout byte the harness reads (0: OTLP, 1: flat)."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import zstandard


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    elif path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return [line for line in data.split(b"\n") if line.strip()]


def main(out: Path, *roots: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or not any(s in path.name for s in (".jsonl", ".json")):
                continue
            try:
                lines = _lines(path)
            except Exception:  # an invalid fixture is still a seed, as bytes
                lines = [path.read_bytes()[:65536]]
            for i in range(0, min(len(lines), 40), 4):
                chunk = b"\n".join(lines[i : i + 4])[:16000] + b"\n"
                layout = b"\x01" if b'"span_id"' in chunk[:4096] else b"\x00"
                (out / f"{path.name}-{i}").write_bytes(layout + chunk)
                n += 1
    print(f"seeded {n} inputs into {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *map(Path, sys.argv[2:]))
