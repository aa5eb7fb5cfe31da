"""Shared bench helpers: data location, markdown tables, medians."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def data_dir() -> Path:
    root = os.environ.get("AE_DATA_DIR")
    if not root or not Path(root).is_dir():
        sys.exit("set AE_DATA_DIR to the datasets folder (e.g. ../shared/data)")
    return Path(root)


def table(title: str, columns: list[str], rows: list[list]) -> str:
    def fmt(v):  # noqa: ANN001, ANN202
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    out = "\n".join(lines) + "\n"
    print(out, flush=True)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def median_range(vals: list, digits: int = 4) -> str:
    """Median (min–max) of the values given, Nones dropped; the range only for several; n/a for none."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    return f"{med:.{digits}f}" + (f" ({min(vals):.{digits}f}–{max(vals):.{digits}f})" if len(vals) > 1 else "")
