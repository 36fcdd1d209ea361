"""summary.html in headless Chromium: it renders (a real, non-blank screenshot) and its sorting script works.

Needs the Debian `chromium` package (scripts/install-chromium.sh); skipped with the reason when it is absent.
Set REPORT_SCREENSHOT_DIR to keep the screenshot (e.g. as a CI artifact).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from pathlib import Path

from shared.reports.html_report import render_summary_html
from tests.browser.chromium import MARKS, run_chromium
from tests.unit.test_reports import DATASETS, build_result

WIDTH, HEIGHT = 1400, 2400

pytestmark = MARKS


def _page(tmp_path: Path, extra_script: str = "") -> Path:
    page = render_summary_html(build_result(), {"gate": {"passed": False, "reason": "accuracy below 0.8"}})
    if extra_script:
        page = page.replace("</body>", f"<script>{extra_script}</script>\n</body>")
    path = tmp_path / "summary.html"
    path.write_text(page, encoding="utf-8")
    return path


def _png(data: bytes) -> tuple[int, int, int, bytes]:
    """Width, height, bytes per pixel and the decompressed (still filtered) scanlines of an 8-bit PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8, depth
    assert colour in (2, 6), colour  # RGB or RGBA
    return width, height, 3 if colour == 2 else 4, zlib.decompress(idat)


def _rows(width: int, bpp: int, raw: bytes, count: int) -> list[bytearray]:
    """Undo PNG filtering for the first `count` scanlines (enough to read the header band)."""
    stride, rows, previous = width * bpp, [], bytearray(width * bpp)
    for y in range(count):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(line)
        previous = line
    return rows


def test_summary_screenshot_is_rendered(tmp_path: Path) -> None:
    page = _page(tmp_path)
    shot = tmp_path / "summary.png"
    run = run_chromium(tmp_path, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), run.stderr[-2000:]
    if os.environ.get("REPORT_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["REPORT_SCREENSHOT_DIR"]) / "summary.png")

    data = shot.read_bytes()
    assert len(data) > 100_000, "a blank 1400×2400 page compresses to a few KB"
    width, height, bpp, raw = _png(data)
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(raw) == height * (width * bpp + 1)
    assert len(set(raw[:: 101])) > 64, "scanlines look uniform: the page did not render"
    rows = _rows(width, bpp, raw, 60)
    header = rows[40][700 * bpp:700 * bpp + 3]
    assert max(header) < 80, f"the dark header band is missing (pixel {tuple(header)}): CSS did not apply"


def test_sorting_script_runs_and_keeps_every_row(tmp_path: Path) -> None:
    # Click the first metric header (accuracy) of the first dataset's table twice: ascending, then descending.
    click = "var th = document.querySelector('#dataset-1 thead th:nth-child(2)'); th.click(); th.click();"
    run = run_chromium(tmp_path, "--dump-dom", _page(tmp_path, click).as_uri())
    dom = run.stdout
    assert 'data-sortable="ready"' in dom, run.stderr[-2000:]

    result = build_result()
    tables = {match.group(1): match.group(2) for match in
              re.finditer(r'<table class="data sortable" id="([^"]+)">(.*?)</table>', dom, re.S)}
    assert set(tables) >= {"overall", "dataset-1", "dataset-2", "failed-lines-table"}
    for table_id in ("overall", "dataset-1", "dataset-2"):
        assert len(re.findall(r"<tr class=", tables[table_id])) == 4  # every combination, none lost by sorting
    failed = sum(run.failed_lines for run in result.standard_runs)
    assert tables["failed-lines-table"].count("<tr>") - 1 == failed

    sorted_table = tables["dataset-1"]
    assert re.search(r'<th class="num"[^>]*aria-sort="descending"[^>]*>accuracy', sorted_table), sorted_table[:600]
    labels = [run.label for run in result.standard_runs if run.dataset == DATASETS[0]]
    accuracy = {
        f"C{labels.index(run.label) + 1}": evaluation.metrics["accuracy"]
        for run in result.standard_runs if run.dataset == DATASETS[0]
        for evaluation in result.evaluations_of(run.run_id)
    }
    order = re.findall(r'data-combination="(C\d+)"', sorted_table)
    assert order == sorted(accuracy, key=accuracy.__getitem__, reverse=True)
