"""One way in for rows: training data, `detect`, `score` and the live monitor all turn raw rows into
a series here, so they accept, reject and fill the same rows in the same way.

Reading
- CSV: a header line names the columns; the separator is `,`, `;` or tab, whichever splits the
  header most. One record per line (a quoted field may hold the separator, not a line break);
  blank lines and a repeated header are skipped; a line with another number of fields than the
  header is rejected. JSON lines: one object per line holding the model's keys. Parquet: typed
  columns, rows numbered from 1. Line numbers are physical lines of the input, header included.
- Numbers: a cell is read with Python's `float` after trimming spaces. An empty cell, one of
  na, n/a, nan, null, none (any case), a JSON null or a NaN is a *missing reading* (the gap policy
  fills it); anything else that is not a number rejects the row ("bad number"), and so does an
  infinite value.
- Timestamps: `pandas.Timestamp` of the trimmed text, which must name its year in four digits
  (time-only text, "now" or "today" would mean something else tomorrow); plain numbers are not
  timestamps. Zone-aware stamps are converted to UTC and kept without the zone. An empty or
  unparseable stamp rejects the row.
- Time order: a row whose timestamp is not after the last *accepted* one is rejected as a
  duplicate or out of order. A rejected row never moves the clock. Every rejection carries its
  line number and reason.

Gap policy
- Batch form (`fill_gaps`: training data, offline scoring): interior runs of at most `MAX_GAP`
  missing values are linearly interpolated; longer runs and the edges are forward/back-filled;
  every fill is counted and logged.
- Causal form (`CausalIngest`: `detect` in causal mode, `score`, `monitor`): a missing reading
  takes the channel's last accepted value. At the very start of a series, before the channel has
  had any value, it takes the channel's *start value*; detectors pass their training mean (what
  their scaler maps to 0). That rule needs nothing from later rows (causal), is deterministic, is
  the same in every path and is neutral for the model, unlike a value borrowed from the future
  (back-fill) or from another channel. `CausalIngest` carries its state (last timestamp, last
  values, counts) across chunks and stream records as plain JSON, and feeding it rows in one
  batch, in chunks or one at a time gives the same rows, values and rejections.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.jobs.tables import iter_table_chunks, separator_of

log = logging.getLogger(__name__)

MAX_GAP = 5
MAX_FIELD = 200  # characters in a number or timestamp cell: longer ones are rejected, not parsed (a 1 MB
#                  cell made timestamp parsing take minutes)
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
_YEAR = re.compile(r"\d{4}")
_ISO = re.compile(r"\d{4}-\d\d-\d\d([ T]\d\d:\d\d(:\d\d(\.\d{1,9})?)?)?(Z|[+-]\d\d:?\d\d)?$")
_PLAIN_ISO = re.compile(r"\d{4}-\d\d-\d\d([ T]\d\d:\d\d(:\d\d(\.\d{1,6})?)?)?$")  # no zone, at most microseconds
_NS_MIN, _NS_MAX = np.datetime64(pd.Timestamp.min.ceil("us"), "us"), np.datetime64(pd.Timestamp.max.floor("us"), "us")
_NO_TIME = int(np.iinfo(np.int64).min)  # before every real timestamp
_PARQUET = (".parquet", ".pq")


@dataclass
class Rejected:
    """A row left out: its line number (Parquet: its row number) and why."""

    line_no: int
    reason: str


@dataclass
class Layout:
    """The columns a series is made of: value channels, an optional time column and an optional
    column naming the series when one input holds several."""

    channels: list[Any]
    time_col: str | None = None
    key_col: str | None = None

    @property
    def columns(self) -> list[Any]:
        return [*([self.time_col] if self.time_col else []), *self.channels, *([self.key_col] if self.key_col else [])]

    def check(self, have: Sequence[Any], source: str) -> None:
        missing = [c for c in self.columns if c not in have]
        if missing:
            raise UserError(f"{source}: no column {', '.join(map(repr, missing))}; columns are "
                            f"{', '.join(map(str, have))}")


@dataclass
class Rows:
    """Raw cells of some rows as read: line numbers, value cells (n, channels), time and key cells."""

    line_no: np.ndarray
    values: np.ndarray
    times: np.ndarray | None = None
    keys: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.line_no)

    @classmethod
    def from_cells(cls, layout: Layout, line_nos: Sequence[int], cells: Sequence[Sequence[Any]]) -> Rows:
        """From split lines, each a list of cells in `layout.columns` order."""
        grid = np.array(cells, dtype=object).reshape(len(cells), len(layout.columns))
        return cls._split(layout, np.asarray(line_nos, dtype=np.int64), grid)

    @classmethod
    def from_frame(cls, layout: Layout, frame: pd.DataFrame, first_line: int = 1) -> Rows:
        """From a typed table (Parquet, a DataFrame); rows are numbered from `first_line`."""
        lines = np.arange(first_line, first_line + len(frame), dtype=np.int64)
        return cls(lines, frame[list(layout.channels)].to_numpy(),
                   frame[layout.time_col].to_numpy() if layout.time_col else None,
                   frame[layout.key_col].to_numpy() if layout.key_col else None)

    @classmethod
    def _split(cls, layout: Layout, lines: np.ndarray, grid: np.ndarray) -> Rows:
        t = 1 if layout.time_col else 0
        c = len(layout.channels)
        return cls(lines, grid[:, t:t + c], grid[:, 0] if t else None, grid[:, t + c] if layout.key_col else None)

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(self.line_no[idx], self.values[idx], None if self.times is None else self.times[idx],
                    None if self.keys is None else self.keys[idx])


@dataclass
class Accepted:
    """Rows that passed: line numbers, timestamps (datetime64[ns] or None) and float values."""

    line_no: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.line_no)

    @classmethod
    def concat(cls, parts: Sequence[Accepted], n_channels: int, timed: bool) -> Accepted:
        if not parts:
            return cls(np.zeros(0, dtype=np.int64), np.zeros((0, n_channels)),
                       np.zeros(0, dtype="datetime64[ns]") if timed else None)
        times = [p.timestamps for p in parts if p.timestamps is not None]
        return cls(np.concatenate([p.line_no for p in parts]), np.vstack([p.values for p in parts]),
                   np.concatenate(times) if timed else None)


class _Bad(Exception):
    """A cell that rejects its row; the message is the reason."""


# ------------------------------------------------------------------------------------------- cells
def to_number(cell: Any) -> float:
    """One value cell as a float (NaN: a missing reading); raises ValueError or TypeError if it is no number."""
    if cell is None or cell is pd.NA:
        return np.nan
    if isinstance(cell, str):
        text = cell.strip()
        return np.nan if text.lower() in MISSING else float(text)
    if isinstance(cell, (bool, int, float, np.bool_, np.number)):
        return float(cell)
    raise TypeError(f"not a number: {cell!r}")


def to_stamp(cell: Any) -> int:
    """One timestamp cell as nanoseconds since the epoch (UTC where the stamp names a zone)."""
    if cell is None or cell is pd.NaT or (isinstance(cell, float) and np.isnan(cell)) or (
            isinstance(cell, str) and not cell.strip()):
        raise _Bad("empty timestamp")
    text = cell.strip() if isinstance(cell, str) else cell
    if isinstance(cell, (bool, int, float, np.number)) or (isinstance(text, str) and not _YEAR.search(text)):
        raise _Bad(f"timestamp {cell!r} cannot be parsed")
    try:
        ts = pd.Timestamp(text)
        if ts is pd.NaT:
            raise _Bad("empty timestamp")
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return int(ts.as_unit("ns").value)
    except (ValueError, TypeError, OverflowError):
        raise _Bad(f"timestamp {cell!r} cannot be parsed") from None


def _numbers(cells: np.ndarray, name: Any, reasons: list[str | None]) -> np.ndarray:
    if cells.dtype.kind in "biuf":
        out = cells.astype(float)
    else:
        out = np.empty(len(cells))
        for i, cell in enumerate(cells):
            if isinstance(cell, str) and len(cell) > MAX_FIELD:
                out[i] = np.nan
                reasons[i] = reasons[i] or f"{name} has {len(cell):,} characters (at most {MAX_FIELD})"
                continue
            try:
                out[i] = to_number(cell)
            except (ValueError, TypeError):
                out[i] = np.nan
                reasons[i] = reasons[i] or f"bad number {cell!r} in {name}"
    for i in np.flatnonzero(np.isinf(out)):
        reasons[i] = reasons[i] or f"infinite value in {name}"
    return out


def _stamps(cells: np.ndarray, reasons: list[str | None]) -> np.ndarray:
    if cells.dtype.kind == "M":
        out = cells.astype("datetime64[ns]").view(np.int64).copy()
        for i in np.flatnonzero(out == _NO_TIME):
            reasons[i] = reasons[i] or "empty timestamp"
        return out
    out = np.full(len(cells), _NO_TIME, dtype=np.int64)
    long = [i for i, c in enumerate(cells) if isinstance(c, str) and len(c) > MAX_FIELD]
    for i in long:
        reasons[i] = reasons[i] or f"timestamp has {len(cells[i]):,} characters (at most {MAX_FIELD})"
    if long:
        cells = cells.copy()
        cells[long] = ""  # left out below; the reason is already set
    text = np.array([c.strip() if isinstance(c, str) else "" for c in cells], dtype=object)
    plain = np.array([_PLAIN_ISO.match(t) is not None for t in text], dtype=bool)
    if plain.any():  # the commonest case, no zone: numpy's parser, about 100x faster than pandas' on a stream's batches
        out[plain] = _plain_stamps(text[plain])
    iso = np.array([_ISO.match(t) is not None for t in text], dtype=bool) & (out == _NO_TIME)
    if iso.any():  # zoned ISO text, vectorised; it gives what to_stamp gives for these
        parsed = pd.to_datetime(pd.Series(text[iso]), format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
        inside = parsed.between(pd.Timestamp.min, pd.Timestamp.max).to_numpy()  # NaT and far dates: per cell
        out[np.flatnonzero(iso)[inside]] = parsed[inside].to_numpy().astype("datetime64[ns]").view(np.int64)
    for i in np.flatnonzero(out == _NO_TIME):  # everything else, and ISO-looking text that is no date
        try:
            out[i] = to_stamp(cells[i])
        except _Bad as exc:
            reasons[i] = reasons[i] or str(exc)
    return out


def _plain_stamps(text: np.ndarray) -> np.ndarray:
    """Zone-less ISO stamps as nanoseconds; `_NO_TIME` where numpy cannot read one (the caller then
    tries pandas, cell by cell). Parsed at microseconds first: numpy's nanoseconds wrap silently
    outside 1678-2261."""
    try:
        micros = np.array(text.tolist(), dtype="datetime64[us]")
    except ValueError:  # e.g. hour 24 or 30 February somewhere in the batch: read them one at a time
        return np.array([_plain_stamps(np.array([t], dtype=object))[0] for t in text], dtype=np.int64) \
            if len(text) > 1 else np.array([_NO_TIME], dtype=np.int64)
    inside = (micros >= _NS_MIN) & (micros <= _NS_MAX)
    out = np.full(len(text), _NO_TIME, dtype=np.int64)
    out[inside] = micros[inside].astype("datetime64[ns]").view(np.int64)
    return out


def _when(ns: int) -> str:
    return str(pd.Timestamp(ns))


# ---------------------------------------------------------------------------------------- screening
class RowScreen:
    """Number coercion, timestamp parsing and the time-order check, a batch of rows at a time; it
    remembers the last accepted timestamp, so batches may be of any size."""

    def __init__(self, layout: Layout, check_order: bool = True) -> None:
        self.layout, self.check_order = layout, check_order
        self.last_time = _NO_TIME

    def push(self, rows: Rows) -> tuple[Accepted, list[Rejected]]:
        n = len(rows)
        reasons: list[str | None] = [None] * n
        stamps = _stamps(rows.times, reasons) if self.layout.time_col else None
        values = np.empty((n, len(self.layout.channels)))
        for j, name in enumerate(self.layout.channels):
            values[:, j] = _numbers(rows.values[:, j], name, reasons)
        if stamps is not None and self.check_order:
            self._order(stamps, reasons)
        keep = np.array([r is None for r in reasons], dtype=bool)
        rejected = [Rejected(int(rows.line_no[i]), r) for i, r in enumerate(reasons) if r is not None]
        times = None if stamps is None else stamps[keep].view("datetime64[ns]")
        return Accepted(rows.line_no[keep], values[keep], times), rejected

    def _order(self, stamps: np.ndarray, reasons: list[str | None]) -> None:
        """A row passes when its stamp is after every earlier candidate's (equivalently, after the
        last accepted one: a rejected stamp is never above the running maximum)."""
        idx = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
        if not len(idx):
            return
        t = stamps[idx]
        running = np.maximum.accumulate(np.concatenate([[self.last_time], t[:-1]]))
        for i, ti, last in zip(idx[t <= running], t[t <= running], running[t <= running]):
            reasons[i] = (f"duplicate timestamp {_when(ti)}" if ti == last else
                          f"out-of-order timestamp {_when(ti)} (not in increasing order after {_when(last)})")
        self.last_time = max(self.last_time, int(t.max()))

    def state(self) -> dict[str, Any]:
        return {"last_time": None if self.last_time == _NO_TIME else pd.Timestamp(self.last_time).isoformat()}

    def restore(self, state: dict[str, Any]) -> None:
        last = state.get("last_time")
        self.last_time = _NO_TIME if last is None else int(pd.Timestamp(last).as_unit("ns").value)


def describe(rejected: Sequence[Rejected], limit: int = 10) -> str:
    """'3 row(s) rejected (line 5: bad number 'x' in v; …)' with the first `limit` of them."""
    shown = "; ".join(f"line {r.line_no}: {r.reason}" for r in rejected[:limit])
    more = f"; and {len(rejected) - limit} more" if len(rejected) > limit else ""
    return f"{len(rejected)} row(s) rejected ({shown}{more})"


def screen_strict(rows: Rows, layout: Layout, source: str, check_order: bool = True) -> Accepted:
    """For data that must be clean (training, benchmarks): the first bad row is an error naming it."""
    accepted, rejected = RowScreen(layout, check_order).push(rows)
    if rejected:
        first = rejected[0]
        more = f" ({len(rejected) - 1} more bad row(s))" if len(rejected) > 1 else ""
        raise UserError(f"{source}: row {first.line_no}: {first.reason}{more}")
    return accepted


# ----------------------------------------------------------------------------------------- the gap policy
def fill_gaps(values: np.ndarray, max_gap: int = MAX_GAP) -> tuple[np.ndarray, dict[str, int]]:
    """The batch form of the gap policy; returns the filled values and counts of what was done."""
    frame = pd.DataFrame(values)
    missing = frame.isna()
    report = {"missing": int(missing.values.sum()), "interpolated": 0, "filled": 0}
    if report["missing"] == 0:
        return values, report
    interp = frame.interpolate(method="linear", limit=max_gap, limit_area="inside")
    # undo interpolation inside runs longer than max_gap (pandas fills their first max_gap values)
    for c in frame.columns:
        run_id = (~missing[c]).cumsum()
        run_len = missing[c].groupby(run_id).transform("sum")
        long_run = missing[c] & (run_len > max_gap)
        interp.loc[long_run, c] = np.nan
    report["interpolated"] = int((missing & interp.notna()).values.sum())
    filled = interp.ffill().bfill()
    report["filled"] = report["missing"] - report["interpolated"]
    if filled.isna().values.any():
        raise UserError("a column has no valid numeric value at all")
    log.warning("gap policy: %d missing values, %d interpolated (runs <= %d), %d forward/back-filled",
                report["missing"], report["interpolated"], max_gap, report["filled"])
    return filled.to_numpy(dtype=float), report


@dataclass
class GapCounts:
    rows: int = 0
    rejected: int = 0
    missing: int = 0  # missing readings filled
    filled_start: int = 0  # of which with the start value (no earlier reading of the channel)


class CausalIngest:
    """Screening plus the causal form of the gap policy for one series, incrementally.

    `start` holds each channel's value before its first reading (detectors: the training mean).
    """

    def __init__(self, layout: Layout, start: Sequence[float] | np.ndarray | None = None) -> None:
        c = len(layout.channels)
        self.layout = layout
        self.start = np.zeros(c) if start is None else np.asarray(start, dtype=float).reshape(c)
        if not np.isfinite(self.start).all():
            raise UserError("start values of the gap policy must be finite")
        self.screen = RowScreen(layout)
        self.last = self.start.copy()
        self.seen = np.zeros(c, dtype=bool)
        self.counts = GapCounts()

    def push(self, rows: Rows) -> tuple[Accepted, list[Rejected]]:
        accepted, rejected = self.screen.push(rows)
        accepted.values = self._fill(accepted.values)
        self.counts.rows += len(rows)
        self.counts.rejected += len(rejected)
        return accepted, rejected

    def _fill(self, values: np.ndarray) -> np.ndarray:
        stacked = np.vstack([self.last[None, :], values])
        gap = np.isnan(stacked)
        source = np.maximum.accumulate(np.where(gap, 0, np.arange(len(stacked))[:, None]), axis=0)
        filled = np.take_along_axis(stacked, source, axis=0)[1:]
        self.counts.missing += int(gap[1:].sum())
        self.counts.filled_start += int((gap[1:] & (source[1:] == 0) & ~self.seen).sum())
        self.seen |= ~gap[1:].all(axis=0)
        if len(filled):
            self.last = filled[-1].copy()
        return filled

    def state(self) -> dict[str, Any]:
        return {**self.screen.state(), "last": self.last.tolist(), "seen": self.seen.tolist(),
                "counts": vars(self.counts).copy()}

    def restore(self, state: dict[str, Any]) -> None:
        self.screen.restore(state)
        if "last" in state:
            self.last = np.asarray(state["last"], dtype=float).reshape(self.start.shape)
            self.seen = np.asarray(state["seen"], dtype=bool).reshape(self.start.shape)
        self.counts = GapCounts(**state.get("counts", {}))

    def report(self) -> str:
        c = self.counts
        return (f"gap policy (causal): {c.missing} missing reading(s) filled, {c.missing - c.filled_start} with the "
                f"channel's last value, {c.filled_start} with its start value (training mean)")


# -------------------------------------------------------------------------------------------- text
class LineSplitter:
    """Text lines → cells in `layout.columns` order. CSV needs its header line first; JSON lines need
    every key. `split` returns None for a line without a record (blank, header) and a Rejected for a
    malformed one."""

    def __init__(self, layout: Layout, fmt: str = "csv", source: str = "input") -> None:
        if fmt not in ("csv", "jsonl"):
            raise UserError(f"unknown input format {fmt!r}; choose csv or jsonl")
        self.layout, self.fmt, self.source = layout, fmt, source
        self.header: list[str] | None = None
        self.sep = ","
        self._index: list[int] = []

    def split(self, line: str, line_no: int) -> list[Any] | Rejected | None:
        if not line.strip():
            return None
        if self.fmt == "jsonl":
            return self._json(line, line_no)
        if self.header is None:
            self._set_header(line.lstrip("\ufeff"))
            return None
        try:
            fields = self._fields(line)
        except csv.Error as exc:
            return Rejected(line_no, f"malformed CSV line: {exc}")
        if fields == self.header:
            return None  # a repeated header (files joined together)
        if len(fields) != len(self.header):
            return Rejected(line_no, f"expected {len(self.header)} fields, got {len(fields)}")
        return [fields[i] for i in self._index]

    def _fields(self, line: str) -> list[str]:
        return [f.strip() for f in next(csv.reader([line], delimiter=self.sep))]

    def _set_header(self, line: str) -> None:
        self.sep = separator_of(line)
        try:
            header = self._fields(line)
        except csv.Error as exc:
            raise UserError(f"{self.source}: unreadable header line: {exc}") from None
        self.layout.check(header, self.source)
        self.header, self._index = header, [header.index(c) for c in self.layout.columns]

    def _json(self, line: str, line_no: int) -> list[Any] | Rejected:
        try:
            obj = json.loads(line)
        except ValueError:
            return Rejected(line_no, "not valid JSON")
        if not isinstance(obj, dict):
            return Rejected(line_no, "JSON line is not an object")
        for c in self.layout.columns:
            if c not in obj:
                return Rejected(line_no, f"missing field {c}")
        return [json.dumps(v) if isinstance(v, (list, dict)) else v for v in (obj[c] for c in self.layout.columns)]

    def state(self) -> dict[str, Any]:
        return {"header": self.header, "sep": self.sep}

    def restore(self, state: dict[str, Any]) -> None:
        self.sep = state.get("sep", ",")
        header = state.get("header")
        if header:
            self.layout.check(header, self.source)
            self.header, self._index = list(header), [header.index(c) for c in self.layout.columns]


@dataclass
class _Pending:
    lines: list[int] = field(default_factory=list)
    cells: list[list[Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines) + len(self.rejected)


def read_rows(path: str | Path, layout: Layout,
              chunk_rows: int | None = 100_000) -> Iterator[tuple[Rows, list[Rejected]]]:
    """A CSV or Parquet file as chunks of raw rows (at most `chunk_rows` each, None: one chunk) and
    the lines rejected while splitting them. Missing model columns or an empty file are errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input {path} does not exist" if not path.exists() else f"{path} is not a file")
    limit = chunk_rows or 1 << 62
    if path.suffix.lower() in _PARQUET:
        first = 1
        for frame in iter_table_chunks(path, chunk_rows or 1_000_000):
            layout.check(list(frame.columns), str(path))
            yield Rows.from_frame(layout, frame, first), []
            first += len(frame)
        return
    splitter = LineSplitter(layout, "csv", str(path))
    pending = _Pending()
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            got = splitter.split(raw.decode("utf-8", errors="replace").rstrip("\r\n"), line_no)
            if isinstance(got, Rejected):
                pending.rejected.append(got)
            elif got is not None:
                pending.lines.append(line_no)
                pending.cells.append(got)
            if len(pending) >= limit:
                yield Rows.from_cells(layout, pending.lines, pending.cells), pending.rejected
                pending = _Pending()
    if splitter.header is None:
        raise UserError(f"{path} is empty")
    if len(pending):
        yield Rows.from_cells(layout, pending.lines, pending.cells), pending.rejected
