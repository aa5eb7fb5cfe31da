"""A self-contained HTML report: headings, paragraphs, tables and PNG images embedded as base64,
so one file can be mailed or opened offline."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.jobs.atomic import atomic_write_text

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
color:#222;padding:0 1em}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}.note{color:#555;font-size:14px}
"""


@dataclass
class Section:
    title: str
    blocks: list[str] = field(default_factory=list)

    def text(self, paragraph: str, note: bool = False) -> Section:
        cls = ' class="note"' if note else ""
        self.blocks.append(f"<p{cls}>{html.escape(paragraph)}</p>")
        return self

    def table(self, frame: pd.DataFrame, caption: str | None = None, float_format: str = "{:.4f}") -> Section:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for row in frame.itertuples(index=False):  # keeps each column's type (iterrows casts ints to float)
            cells = []
            for v in row:
                if isinstance(v, (float, np.floating)):
                    cells.append(f'<td class="num">{float_format.format(v)}</td>')
                elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                    cells.append(f'<td class="num">{v}</td>')
                else:
                    cells.append(f"<td>{html.escape(str(v))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        return self

    def image(self, png: str | Path, alt: str) -> Section:
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        self.blocks.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        return self


def write_report(path: str | Path, title: str, sections: list[Section], meta: dict[str, Any] | None = None) -> Path:
    meta_html = ""
    if meta:
        items = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in meta.items())
        meta_html = f'<ul class="note">{items}</ul>'
    body = "".join(f"<h2>{html.escape(s.title)}</h2>{''.join(s.blocks)}" for s in sections)
    doc = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{meta_html}{body}</body></html>")
    atomic_write_text(path, doc)
    return Path(path)
