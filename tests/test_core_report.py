"""The self-contained HTML report: sections, escaping, embedded PNGs, atomic writes."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest

from core.jobs import atomic
from core.jobs.report import Section, write_report


def _png(path: Path, width: int = 3, height: int = 2) -> bytes:
    """A tiny valid RGB PNG, written to `path`; returns its bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    path.write_bytes(data)
    return data


def _sections(tmp_path: Path) -> tuple[list[Section], bytes]:
    png = _png(tmp_path / "plot.png")
    frame = pd.DataFrame({"model": ["<script>alert(1)</script>", "a & b"], "epochs": [3, 40],
                          "rmse": [0.912345, 1.5]})
    sections = [
        Section("Recommender results").text("Lower is <better>.").table(frame, caption="Test <RMSE>"),
        Section("Anomaly plots").image(tmp_path / "plot.png", alt='scores "NAB"').text("a note", note=True),
    ]
    return sections, png


def test_report_is_self_contained_html_with_sections_tables_and_images(tmp_path: Path) -> None:
    sections, png = _sections(tmp_path)
    out = write_report(tmp_path / "out" / "report.html", "Demo <run>", sections, meta={"seed": 0, "data": "<dir>"})
    assert out == tmp_path / "out" / "report.html"
    doc = out.read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert "<title>Demo &lt;run&gt;</title>" in doc and "<h1>Demo &lt;run&gt;</h1>" in doc
    assert doc.index("<h2>Recommender results</h2>") < doc.index("<h2>Anomaly plots</h2>")
    # every piece of user text is escaped: no live script, no raw angle brackets from the data
    assert "<script" not in doc.lower()
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in doc and "<td>a &amp; b</td>" in doc
    assert "<caption>Test &lt;RMSE&gt;</caption>" in doc and "<p>Lower is &lt;better&gt;.</p>" in doc
    assert "<li><b>data</b>: &lt;dir&gt;</li>" in doc and '<p class="note">a note</p>' in doc
    assert "<th>model</th><th>epochs</th><th>rmse</th>" in doc
    assert '<td class="num">0.9123</td>' in doc  # floats in the default format
    # the PNG is embedded as a base64 data URI whose bytes are the file's
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', doc)
    assert len(images) == 1 and images[0][0] == "scores &quot;NAB&quot;"
    assert base64.b64decode(images[0][1]) == png
    # self-contained: nothing is fetched from elsewhere
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', doc))
    assert "href=" not in doc and "<link" not in doc and "@import" not in doc


def test_report_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sections, _ = _sections(tmp_path)
    folder = tmp_path / "out"
    path = write_report(folder / "report.html", "first", sections)
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]  # no temporary left behind
    write_report(path, "second", sections)  # replaces the old report in one step
    assert "<title>second</title>" in path.read_text() and sorted(p.name for p in folder.iterdir()) == ["report.html"]

    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_report(path, "third", sections)
    assert "<title>second</title>" in path.read_text()  # the previous report is intact...
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]  # ...and the partial write is gone
    with pytest.raises(OSError, match="No space"):  # nor is anything created where there was no report
        write_report(folder / "new.html", "fresh", sections)
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]


def test_integer_columns_stay_integers_beside_float_columns() -> None:
    section = Section("numbers").table(pd.DataFrame({"epoch": [3], "loss": [0.5]}))
    assert '<td class="num">3</td>' in section.blocks[0]
    assert '<td class="num">0.5000</td>' in section.blocks[0]
