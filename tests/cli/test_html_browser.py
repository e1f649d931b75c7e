"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) renders every plotly
figure of a seeded scenario's report, and its screenshot shows a page, not a blank canvas.

Skipped only when chromium is missing outside CI; under CI (env CI set) .ci/run installs it and a
missing browser fails the test.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from bench.scenarios import generate
from blameset import analyze
from blameset.analyze.html import write_html

BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
RENDER_BUDGET = "--virtual-time-budget=10000"  # virtual ms for scripts: plotly draws, then capture
HANG_LIMIT_S = 120  # a bound on a hung browser, not a timing assertion


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("CI must provide chromium (.ci/run installs Debian's package)")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it under CI)")


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a seeded prompt regression, with its attribution (findings, waterfall)."""
    spans = generate("prompt_regression", requests=3000, seed=3)
    path = tmp_path_factory.mktemp("html") / "report.html"
    write_html(path, spans, attribution=analyze.attribute(spans))
    return path


def _browse(chromium: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A throwaway profile: no state from (or into) the user's own browser profile.
    profile = cwd / "profile"
    return subprocess.run(
        [chromium, *BROWSER_FLAGS, f"--user-data-dir={profile}", RENDER_BUDGET, *args],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT_S,
        check=False,
        cwd=cwd,
    )


def test_every_figure_renders_as_svg(chromium, page, tmp_path):
    """In the rendered DOM each plotly div became a live plot (plotly adds js-plotly-plot when
    it draws) with its SVG layers: the inlined plotly.js ran offline, from one file."""
    source = page.read_text(encoding="utf-8")
    figures = source.count('class="plotly-graph-div"')
    assert figures >= 5
    result = _browse(chromium, "--dump-dom", page.as_uri(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert dom.count('class="plotly-graph-div js-plotly-plot"') == figures
    assert dom.count('class="main-svg"') >= figures
    assert "Findings" in dom


def test_screenshot_is_not_blank(chromium, page, tmp_path):
    """A full-page screenshot holds many colours (lines, bars, text), not one background."""
    shot = tmp_path / "report.png"
    result = _browse(
        chromium, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri(), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = read_png(shot.read_bytes())
    assert pixels.shape[:2] == (2400, 1280)
    rgb = pixels[:, :, :3].reshape(-1, 3)
    colours = np.unique(rgb[::7], axis=0)
    assert len(colours) >= 200, f"only {len(colours)} colours: a blank or broken page"
    background = np.all(rgb >= 250, axis=1).mean()
    assert background < 0.97, f"{background:.1%} of the page is white"
    saturated = (rgb.max(axis=1).astype(int) - rgb.min(axis=1)) > 80  # plot colours, not greys
    assert saturated.mean() > 0.01


# --- the demo's page as a person reads it -------------------------------------------------------

LAYOUT_CHECK = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const inPlot = (el) => el.closest(".js-plotly-plot") !== null;
  const overflowing = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (inPlot(el) || el.tagName === "SCRIPT" || el.id === "layout-report") continue;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 &&
        getComputedStyle(el).overflowX !== "visible")
      overflowing.push(el.tagName + " " + el.className);
    const box = el.getBoundingClientRect(), parent = el.parentElement.getBoundingClientRect();
    if (el.parentElement !== document.body && box.width > 0 &&
        (box.right > parent.right + 1 || box.left < parent.left - 1))
      overflowing.push(el.tagName + "." + el.className + " sticks out of its parent");
  }
  const clash = [];
  for (const plot of document.querySelectorAll(".js-plotly-plot")) {
    const bar = plot.querySelector(".modebar-container");
    for (const title of plot.querySelectorAll(".gtitle")) {
      if (!bar) continue;
      const a = title.getBoundingClientRect(), b = bar.getBoundingClientRect();
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
        clash.push(title.textContent);
    }
  }
  const worse = [...document.querySelectorAll("tr.worse td, td.worse")].map(
    (td) => getComputedStyle(td).color);
  const report = {
    overflowing, clash, worse,
    pageWider: document.documentElement.scrollWidth > window.innerWidth,
    headline: (document.getElementById("headline") || {}).textContent || "",
    legend: [...document.querySelectorAll(".legendtext")].map((t) => t.textContent),
    ticks: [...document.querySelectorAll(".xtick text")].map((t) => t.textContent),
  };
  const out = document.createElement("pre");
  out.id = "layout-report";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
}, 200));
</script>"""


@pytest.fixture(scope="module")
def demo_page(demo_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's report page with the layout check appended (a copy: the demo's is untouched)."""
    page = tmp_path_factory.mktemp("demo-page") / "report.html"
    page.write_text(
        demo_run.html.read_text(encoding="utf-8").replace("</body>", LAYOUT_CHECK + "</body>"),
        encoding="utf-8",
    )
    return page


def _layout(chromium: str, page: Path, cwd: Path) -> dict:
    result = _browse(chromium, "--window-size=1440,2000", "--dump-dom", page.as_uri(), cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', result.stdout, re.S)
    assert found, "the layout check did not run"
    return json.loads(html.unescape(found.group(1)))


def test_the_demo_page_leads_with_its_headline_and_names_versions(
    chromium, demo_run, demo_page, tmp_path
):
    """At desktop width the page opens with the headline the demo prints (in words), every
    legend names version_sets by what they changed, never by a bare 12-hex id, and the rows of
    worse findings are red."""
    from blameset.analyze import describe_finding, headline

    layout = _layout(chromium, demo_page, tmp_path)
    first = headline(demo_run.attribution)
    assert first is not None
    assert layout["headline"] == describe_finding(first)
    assert "outline@v3 -> v4" in " ".join(layout["legend"])
    assert not [t for t in layout["legend"] + layout["ticks"] if re.fullmatch(r"[0-9a-f]{12}", t)]
    assert layout["worse"], "no finding row is marked worse"
    assert all(c.startswith("rgb(176, 28, 29") for c in layout["worse"]), layout["worse"]


def test_nothing_on_the_demo_page_overflows_or_overlaps(chromium, demo_page, tmp_path):
    """No element sticks out of its box or scrolls inside it, the page is no wider than the
    window, and no plot title sits under plotly's toolbar; a desktop screenshot renders."""
    layout = _layout(chromium, demo_page, tmp_path)
    assert layout["overflowing"] == []
    assert layout["clash"] == []
    assert not layout["pageWider"]
    shot = tmp_path / "demo-desktop.png"
    result = _browse(
        chromium,
        f"--screenshot={shot}",
        "--window-size=1440,2400",
        demo_page.as_uri(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_png(shot.read_bytes()).shape[:2] == (2400, 1440)


# --- a PNG reader (zlib + struct), enough for browser screenshots -------------------------------


def read_png(data: bytes) -> np.ndarray:
    """Pixels (height x width x channels, uint8) of an 8-bit, non-interlaced RGB/RGBA/grey PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert header is not None, "no IHDR chunk"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0, f"unsupported PNG: depth {depth}, interlace {interlace}"
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    stride = width * channels
    raw = zlib.decompress(b"".join(idat))
    assert len(raw) == height * (stride + 1), "truncated image data"
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:  # None
            cur = line.copy()
        elif kind == 1:  # Sub: a running sum per channel, modulo 256
            cur = np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:  # Up
            cur = line + prev
        elif kind in (3, 4):
            cur = _unfilter_sequential(int(kind), line.tolist(), prev.tolist(), channels)
        else:
            raise AssertionError(f"row {y}: unknown filter {kind}")
        out[y] = cur
        prev = out[y]
    return out.reshape(height, width, channels)


def _unfilter_sequential(kind: int, line: list[int], prev: list[int], bpp: int) -> np.ndarray:
    """Average (3) and Paeth (4) depend on the byte to the left: one pass along the row."""
    cur = [0] * len(line)
    for i, x in enumerate(line):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if kind == 3:
            cur[i] = (x + ((a + b) >> 1)) & 0xFF
            continue
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (x + predictor) & 0xFF
    return np.array(cur, dtype=np.uint8)


def test_png_reader_round_trips_every_filter():
    """The reader undoes each of the five row filters (encoded here by hand)."""
    rng = np.random.default_rng(0)
    height, width, bpp = 5, 7, 3
    image = rng.integers(0, 256, size=(height, width * bpp), dtype=np.uint8)
    rows = []
    prev = np.zeros(width * bpp, dtype=np.int64)
    for y, kind in enumerate(range(5)):
        cur = image[y].astype(np.int64)
        left = np.concatenate([np.zeros(bpp, dtype=np.int64), cur[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, dtype=np.int64), prev[:-bpp]])
        if kind == 0:
            pred = np.zeros_like(cur)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - up_left
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        rows.append(bytes([kind]) + ((cur - pred) % 256).astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )
    assert np.array_equal(read_png(png).reshape(height, -1), image)
