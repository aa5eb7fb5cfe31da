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
- Time order: a row whose timestamp is before the last *accepted* one is rejected as out of order.
  A rejected row never moves the clock. Every rejection carries its line number and reason, and a
  time-order rejection also names the line it conflicts with.
- Repeated timestamps follow the duplicates policy (`DUPLICATES`, `--duplicates` on every command
  that reads rows): `first` (the default) keeps the first row at a timestamp and leaves later ones
  out; `last` keeps the last of a run of equal stamps; `drop` keeps none of them; `error` refuses
  the input at the first repeat. Rows a policy leaves out are `Rejected` of kind `repeat`, each
  naming the line it repeats. `first` is the default because it is causal: a row is final the
  moment it arrives, so batch, chunked, streamed and resumed reads agree and nothing waits (it is
  also pandas' `drop_duplicates` default, and what these readers did before the policy existed).
  `last` and `drop` must hold the latest row back until a later timestamp (or the end of the
  input: `flush`) shows it is not repeated; a held row travels in the state. Real files repeat
  stamps around clock changes (NAB's `ec2_request_latency_system_failure.csv` stamps a whole
  daylight-saving hour 03:00), so refusing them (`error`) is opt-in.

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
from core.jobs.tables import iter_table_chunks, require_file, separator_of
from core.jsontext import parse_json

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


DUPLICATES = ("first", "last", "drop", "error")
DEFAULT_DUPLICATES = "first"  # causal: see the module docstring
# kinds of Rejected: a bad row; a row the duplicates policy left out; a row an earlier run already scored
BAD, REPEAT, SEEN = "bad", "repeat", "seen"


def check_duplicates(policy: str) -> str:
    if policy not in DUPLICATES:
        raise UserError(f"unknown duplicates policy {policy!r}; choose {', '.join(DUPLICATES)}")
    return policy


@dataclass
class Rejected:
    """A row left out: its line number (Parquet: its row number), why, and what kind of leaving out
    (`BAD` input, a `REPEAT` resolved by the duplicates policy, a row `SEEN` by an earlier run)."""

    line_no: int
    reason: str
    kind: str = BAD


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
@dataclass
class _Held:
    """The latest row under `last`/`drop`, held back until a later timestamp shows it is not repeated."""

    line_no: int
    time: int
    values: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line_no, "time": pd.Timestamp(self.time).isoformat(),
                "values": [None if np.isnan(v) else float(v) for v in self.values]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _Held:
        return cls(int(d["line"]), int(pd.Timestamp(d["time"]).as_unit("ns").value),
                   np.array([np.nan if v is None else v for v in d["values"]], dtype=float))


class RowScreen:
    """Number coercion, timestamp parsing, the time-order check and the duplicates policy, a batch
    of rows at a time; it remembers the last accepted timestamp and line (and, under `last`/`drop`,
    the row held back), so batches may be of any size. `resume_after` (a timestamp in ns) marks rows
    at or before it as `SEEN` (already scored by an earlier run) rather than out of order.
    `unit` names what line numbers count in messages ("line" for text, "row" for tables)."""

    def __init__(self, layout: Layout, check_order: bool = True, duplicates: str = DEFAULT_DUPLICATES,
                 source: str = "input", unit: str = "line") -> None:
        self.layout, self.check_order = layout, check_order
        self.duplicates, self.source, self.unit = check_duplicates(duplicates), source, unit
        self.last_time = _NO_TIME
        self.last_line: int | None = None
        self.held: _Held | None = None
        self.resume_after = _NO_TIME

    def push(self, rows: Rows) -> tuple[Accepted, list[Rejected]]:
        n = len(rows)
        reasons: list[str | None] = [None] * n
        stamps = _stamps(rows.times, reasons) if self.layout.time_col else None
        values = np.empty((n, len(self.layout.channels)))
        for j, name in enumerate(self.layout.channels):
            values[:, j] = _numbers(rows.values[:, j], name, reasons)
        rejected = [Rejected(int(rows.line_no[i]), r) for i, r in enumerate(reasons) if r is not None]
        keep = np.array([r is None for r in reasons], dtype=bool)
        if stamps is None or not self.check_order:
            times = None if stamps is None else stamps[keep].view("datetime64[ns]")
            return Accepted(rows.line_no[keep], values[keep], times), rejected
        idx = np.flatnonzero(keep)
        return self._order(idx, rows.line_no, stamps, values, rejected)

    def flush(self) -> Accepted:
        """The end of the input: pass on the row held back under `last`/`drop` (if any)."""
        held, self.held = self.held, None
        if not self.layout.time_col:
            return Accepted.concat([], len(self.layout.channels), False)
        return self._accepted([held] if held else [], np.zeros(0, dtype=np.int64), None, None, None)

    def _accepted(self, released: list[_Held], idx: np.ndarray, lines: np.ndarray | None, stamps: np.ndarray | None,
                  values: np.ndarray | None) -> Accepted:
        c = len(self.layout.channels)
        out_lines = [np.array([h.line_no for h in released], dtype=np.int64)]
        out_times = [np.array([h.time for h in released], dtype=np.int64)]
        out_values = [np.array([h.values for h in released], dtype=float).reshape(len(released), c)]
        if lines is not None and len(idx):
            out_lines.append(lines[idx].astype(np.int64))
            out_times.append(stamps[idx])
            out_values.append(values[idx])
        return Accepted(np.concatenate(out_lines), np.vstack(out_values),
                        np.concatenate(out_times).view("datetime64[ns]"))

    def _order(self, idx: np.ndarray, lines: np.ndarray, stamps: np.ndarray, values: np.ndarray,
               rejected: list[Rejected]) -> tuple[Accepted, list[Rejected]]:
        """Time order and the duplicates policy over the rows that passed their cells (`idx`)."""
        t = stamps[idx]
        policy = self.duplicates
        holding = policy in ("last", "drop")
        if len(t) and t[0] > max(self.last_time, self.resume_after) and (len(t) == 1 or (np.diff(t) > 0).all()):
            # the common case, vectorised: every row new and in order; under last/drop the newest is held back
            released = [self.held] if self.held else []
            self.held = None
            self.last_time, self.last_line = int(t[-1]), int(lines[idx[-1]])
            if holding:
                i = idx[-1]
                self.held, idx = _Held(int(lines[i]), int(stamps[i]), values[i].copy()), idx[:-1]
            return self._accepted(released, idx, lines, stamps, values), rejected
        released: list[_Held] = []
        emit: list[int] = []
        u = self.unit
        for i in idx:
            ti, line = int(stamps[i]), int(lines[i])
            if ti <= self.resume_after:
                rejected.append(Rejected(line, f"already scored: timestamp {_when(ti)} is at or before "
                                               f"{_when(self.resume_after)}, the last one of an earlier run", SEEN))
                continue
            if ti < self.last_time:
                rejected.append(Rejected(line, f"out-of-order timestamp {_when(ti)} (not in increasing order after "
                                               f"{_when(self.last_time)} on {u} {self.last_line})"))
                continue
            if ti == self.last_time:
                self._repeat(line, ti, values[i], rejected)
                continue
            if self.held is not None:
                released.append(self.held)
                self.held = None
            if holding:
                self.held = _Held(line, ti, values[i].copy())
            else:
                emit.append(i)
            self.last_time, self.last_line = ti, line
        return self._accepted(released, np.array(emit, dtype=np.int64), lines, stamps, values), rejected

    def _repeat(self, line: int, ti: int, row: np.ndarray, rejected: list[Rejected]) -> None:
        """Row `line` repeats the timestamp of the last row (`self.last_line`): apply the policy."""
        u, first, when = self.unit, self.last_line, _when(ti)
        policy = self.duplicates
        if policy == "error":
            raise UserError(f"{self.source}: {u} {line}: timestamp {when} repeats {u} {first} (--duplicates error; "
                            f"first, last or drop would keep the first, the last or none of them)")
        if policy == "last" and self.held is not None:
            rejected.append(Rejected(self.held.line_no, f"duplicate timestamp {when}: {u} {line} repeats it and "
                                                        f"replaces it (--duplicates last)", REPEAT))
            self.held = _Held(line, ti, row.copy())
            self.last_line = line
            return
        if policy == "drop" and self.held is not None:
            rejected.append(Rejected(self.held.line_no, f"duplicate timestamp {when}: {u} {line} repeats it "
                                                        f"(--duplicates drop keeps none)", REPEAT))
            self.held = None
        kept = {"first": "--duplicates first keeps the first", "drop": "--duplicates drop keeps none",
                "last": f"{u} {first} was already passed on, so --duplicates last cannot replace it"}[policy]
        rejected.append(Rejected(line, f"duplicate timestamp {when} repeats {u} {first} ({kept})", REPEAT))

    def state(self) -> dict[str, Any]:
        return {"last_time": None if self.last_time == _NO_TIME else pd.Timestamp(self.last_time).isoformat(),
                "last_line": self.last_line, "held": None if self.held is None else self.held.to_json()}

    def restore(self, state: dict[str, Any]) -> None:
        last = state.get("last_time")
        self.last_time = _NO_TIME if last is None else int(pd.Timestamp(last).as_unit("ns").value)
        self.last_line = state.get("last_line")
        self.held = _Held.from_json(state["held"]) if state.get("held") else None


def describe(rejected: Sequence[Rejected], limit: int = 10, unit: str = "line", what: str = "row(s) rejected") -> str:
    """'3 row(s) rejected (line 5: bad number 'x' in v; …)' with the first `limit` of them."""
    shown = "; ".join(f"{unit} {r.line_no}: {r.reason}" for r in rejected[:limit])
    more = f"; and {len(rejected) - limit} more" if len(rejected) > limit else ""
    return f"{len(rejected)} {what} ({shown}{more})"


def screen_strict(rows: Rows, layout: Layout, source: str, check_order: bool = True,
                  duplicates: str = DEFAULT_DUPLICATES) -> Accepted:
    """For data that must be clean (training, benchmarks): the first bad row is an error naming it;
    rows the duplicates policy leaves out are only logged."""
    screen = RowScreen(layout, check_order, duplicates, source, unit="row")
    accepted, rejected = screen.push(rows)
    bad = [r for r in rejected if r.kind == BAD]
    if bad:
        first = bad[0]
        more = f" ({len(bad) - 1} more bad row(s))" if len(bad) > 1 else ""
        raise UserError(f"{source}: row {first.line_no}: {first.reason}{more}")
    if rejected:
        log.warning("%s: %s", source, describe(rejected, 3, "row", f"row(s) with a repeated timestamp left out "
                                                                  f"(--duplicates {duplicates})"))
    tail = screen.flush()
    return Accepted.concat([accepted, tail], len(layout.channels), layout.time_col is not None) if len(tail) \
        else accepted


def resolve_repeats(frame: pd.DataFrame, time_col: str, duplicates: str = DEFAULT_DUPLICATES, source: str = "input",
                    first_line: int = 1, unit: str = "row") -> pd.DataFrame:
    """The duplicates policy on a whole table (training data, a labelled file): the rows it leaves
    out are removed, with a warning naming their lines (`error` raises at the first repeat). Other
    bad rows stay for the caller's own checks, which name them. Rows are numbered from `first_line`
    (2 for a CSV file with its header line, 1 for Parquet)."""
    layout = Layout([], time_col)
    screen = RowScreen(layout, duplicates=duplicates, source=source, unit=unit)
    _, rejected = screen.push(Rows.from_frame(layout, frame, first_line))
    screen.flush()
    repeats = [r for r in rejected if r.kind == REPEAT]
    if not repeats:
        return frame
    log.warning("%s: %s", source, describe(repeats, 3, unit, f"row(s) with a repeated timestamp left out "
                                                             f"(--duplicates {duplicates})"))
    drop = np.array([r.line_no - first_line for r in repeats], dtype=np.int64)
    return frame.drop(index=frame.index[drop]).reset_index(drop=True)


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
    `duplicates` is the policy for repeated timestamps (see the module docstring); under `last` and
    `drop` the newest row is held back until a later one arrives, so call `flush` at the end of the
    input (a stream that never ends may skip it: the held row is in `state()`).
    """

    def __init__(self, layout: Layout, start: Sequence[float] | np.ndarray | None = None,
                 duplicates: str = DEFAULT_DUPLICATES, source: str = "input") -> None:
        c = len(layout.channels)
        self.layout = layout
        self.start = np.zeros(c) if start is None else np.asarray(start, dtype=float).reshape(c)
        if not np.isfinite(self.start).all():
            raise UserError("start values of the gap policy must be finite")
        self.screen = RowScreen(layout, duplicates=duplicates, source=source)
        self.last = self.start.copy()
        self.seen = np.zeros(c, dtype=bool)
        self.counts = GapCounts()

    def push(self, rows: Rows) -> tuple[Accepted, list[Rejected]]:
        accepted, rejected = self.screen.push(rows)
        accepted.values = self._fill(accepted.values)
        self.counts.rows += len(rows)
        self.counts.rejected += len(rejected)
        return accepted, rejected

    def flush(self) -> Accepted:
        """The end of the input: the row held back under `last`/`drop`, gap-filled (often none)."""
        accepted = self.screen.flush()
        accepted.values = self._fill(accepted.values)
        return accepted

    def resume(self) -> None:
        """A new run over the same series: rows at or before the last timestamp seen so far are
        `SEEN` (scored by an earlier run), not out of order."""
        self.screen.resume_after = self.screen.last_time

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
            obj = parse_json(line, "line")
        except UserError:  # bad syntax, or nested deep enough to overflow the parser
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
    path = require_file(path)  # a missing path, a folder or a named pipe: one line naming which
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
