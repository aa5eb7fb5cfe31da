"""Parsed + template-matched log records → a numeric multivariate series the detector can take.

One row per *time bucket* (`bucket="1min"`, a fixed-length pandas offset) or per *window of N
lines* (`lines=20`, consecutive non-overlapping). The columns, in this order:

- `t<id>`: the count of each of the K most frequent templates of the training part (the
  vocabulary; `<id>` is the template id of tsad.logtemplates, stable across save/load);
- `other`: lines whose template is outside the vocabulary, or matched no template at all
  (`OTHER_ID`: never seen in training);
- `total`: every line of the row;
- `level_<LEVEL>`: lines of each level seen in training (levels in order of training frequency),
  then `level_other` for a level not seen in training (only when training saw any level).
  Lines without a level (syslog) count in no level column.

A line that matched no template (template id `OTHER_ID`) is also a *new-template event*:
`(line number, content)` kept on its row (`CountRow.new_templates`, the first `MAX_EVENTS_PER_ROW`
of a row; `new_count` is complete).

The vocabulary (`Vocabulary`) is part of a model: template ids and texts, levels, the row spec
(bucket or lines) and the *usual* count of every column, which is the **mean count per row over
the training rows** (a mean, not a median: most templates are sparse and their median per row is
0). `to_dict` / `from_dict` are plain JSON; `from_dict` validates every field and raises one
`UserError` for a damaged vocabulary.

Streaming. `LogCounter(vocab)` takes records one at a time (`add(record, template_id)`) and
returns the rows that the record *closed* (a list, usually empty); `flush()` closes the open row at
the end. Bucket mode: a record whose bucket start is after the open row's closes it, and the empty
buckets in between are emitted as rows of zeros (at most `max_empty` in a row; a longer silence is
skipped and the next row simply starts later); a record without a timestamp, or whose stamp falls
before the open bucket (a late line), is counted in the open bucket (a closed row is never
reopened); a record without a timestamp before any timed one is dropped and counted in
`LogCounter.dropped`. Line mode: a row closes after every `lines` records; its time is the last
line's timestamp (None when the format has none) and its `last_line` the last line number.
`count_frame` runs the same counter over a whole list: the batch and the live paths are one code.

`explain_row` names the templates behind an alerted row as text:
`"<template>: 312 in 1 min (usual 4.0 = training mean)"`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from tsad.logparse import LogRecord
from tsad.logtemplates import OTHER_ID, TemplateMiner

VOCAB_FORMAT = "tsad-log-vocabulary"
VOCAB_VERSION = 1
DEFAULT_TOP_K = 50
MAX_EVENTS_PER_ROW = 20  # new-template events kept per row (the count is complete)
MAX_TOP_K = 100_000
_LEVEL_CHARS = re.compile(r"[^A-Za-z0-9_]")
_COLUMN = re.compile(r"t[1-9]\d*|other|total|level_[A-Za-z0-9_]+")


# ------------------------------------------------------------------------------------- row spec
def check_spec(bucket: str | None, lines: int | None) -> tuple[str | None, int | None]:
    """Exactly one of a fixed-length bucket (a pandas offset such as '1min', '30s', '1h') or a
    positive number of lines; the bucket comes back in pandas' canonical spelling."""
    if (bucket is None) == (lines is None):
        raise UserError("count log lines either per time bucket or per window of lines: give exactly one")
    if lines is not None:
        if not isinstance(lines, int) or isinstance(lines, bool) or not 1 <= lines <= 10_000_000:
            raise UserError(f"lines per window must be a positive integer, not {lines!r}")
        return None, lines
    if not isinstance(bucket, str):
        raise UserError(f"bucket must be a pandas offset such as '1min', not {bucket!r}")
    try:
        delta = pd.Timedelta(pd.tseries.frequencies.to_offset(bucket))
    except (ValueError, TypeError):
        raise UserError(f"bucket {bucket!r} is not a fixed-length pandas offset such as '1min', '30s', '1h'") from None
    if delta <= pd.Timedelta(0):
        raise UserError(f"bucket {bucket!r} must be a positive duration")
    return pd.tseries.frequencies.to_offset(bucket).freqstr, None


def span_text(bucket: str | None, lines: int | None) -> str:
    """'1 min', '30 s', '2 h', '1 day' or '20 lines': the length of one row, for messages."""
    if lines is not None:
        return f"{lines} line" + ("" if lines == 1 else "s")
    seconds = pd.Timedelta(pd.tseries.frequencies.to_offset(bucket)).total_seconds()
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}" + ("s" if unit == "day" and n > 1 else "")
    return f"{seconds:g} s"


def level_column(level: str) -> str:
    return "level_" + (_LEVEL_CHARS.sub("_", level) or "_")


# ------------------------------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class Vocabulary:
    """What the counter needs from training (module docstring); immutable, plain JSON."""

    templates: tuple[tuple[int, str], ...]  # (template id, template text), most frequent first
    levels: tuple[str, ...] = ()  # levels seen in training, most frequent first
    bucket: str | None = None
    lines: int | None = None
    usual: tuple[float, ...] = ()  # mean count per training row of every column (empty: not fitted)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------ layout
    @property
    def columns(self) -> list[str]:
        cols = [f"t{tid}" for tid, _ in self.templates] + ["other", "total"]
        if self.levels:
            cols += [level_column(lv) for lv in self.levels] + ["level_other"]
        return cols

    @property
    def column_text(self) -> dict[str, str]:
        """Column → readable meaning: the template text for `t<id>`, a phrase for the others."""
        out = {f"t{tid}": text for tid, text in self.templates}
        out["other"] = "<other: templates outside the vocabulary or unseen in training>"
        out["total"] = "<all lines>"
        for lv in self.levels:
            out[level_column(lv)] = f"<level {lv}>"
        if self.levels:
            out["level_other"] = "<levels unseen in training>"
        return out

    @property
    def span(self) -> str:
        return span_text(self.bucket, self.lines)

    def usual_of(self) -> dict[str, float]:
        return dict(zip(self.columns, self.usual))

    def validate(self) -> None:
        check_spec(self.bucket, self.lines)
        if not isinstance(self.templates, tuple) or len(self.templates) > MAX_TOP_K:
            raise UserError("vocabulary templates must be a list of [id, text] pairs")
        seen: set[int] = set()
        for item in self.templates:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise UserError("vocabulary templates must be [id, text] pairs")
            tid, text = item
            if not isinstance(tid, int) or isinstance(tid, bool) or tid < 1 or tid in seen:
                raise UserError(f"vocabulary template id {tid!r} must be a unique positive integer")
            if not isinstance(text, str) or not text:
                raise UserError(f"vocabulary template {tid}: text must be a non-empty string")
            seen.add(tid)
        if not isinstance(self.levels, tuple) or not all(isinstance(lv, str) and lv for lv in self.levels):
            raise UserError("vocabulary levels must be a list of non-empty strings")
        names = [level_column(lv) for lv in self.levels]
        if len(set(names)) != len(names) or "level_other" in names:
            raise UserError("vocabulary levels must give distinct column names (and not 'other')")
        if not isinstance(self.usual, tuple) or not all(
                isinstance(u, (int, float)) and not isinstance(u, bool) and math.isfinite(u) and u >= 0
                for u in self.usual):
            raise UserError("vocabulary usual counts must be finite non-negative numbers")
        if self.usual and len(self.usual) != len(self.columns):
            raise UserError(f"vocabulary has {len(self.usual)} usual counts for {len(self.columns)} columns")

    # ------------------------------------------------------------------------------ building
    @classmethod
    def fit(cls, template_ids: Iterable[int], texts: Mapping[int, str], levels: Iterable[str | None] = (),
            top_k: int = DEFAULT_TOP_K, *, bucket: str | None = None, lines: int | None = None) -> Vocabulary:
        """The K most frequent templates among `template_ids` (ties: the lower id first; OTHER_ID is
        never a vocabulary entry) and the levels seen, most frequent first (ties: by name)."""
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
            raise UserError(f"top_k must be a positive integer, not {top_k!r}")
        bucket, lines = check_spec(bucket, lines)
        counts = Counter(i for i in template_ids if i != OTHER_ID)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        missing = [tid for tid, _ in ranked if tid not in texts]
        if missing:
            raise UserError(f"template ids {missing[:5]} have no text")
        level_counts = Counter(lv for lv in levels if lv)
        ranked_levels = sorted(level_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept: list[str] = []
        names: set[str] = {"level_other"}
        for lv, _ in ranked_levels:  # two levels that sanitise to one column name: the rarer is "other"
            if level_column(lv) not in names:
                kept.append(lv)
                names.add(level_column(lv))
        return cls(tuple((tid, texts[tid]) for tid, _ in ranked), tuple(kept), bucket, lines)

    def with_usual(self, frame: pd.DataFrame) -> Vocabulary:
        """The same vocabulary with `usual` = the mean count per row of `frame` (training rows)."""
        if len(frame) == 0:
            raise UserError("no training rows to learn usual counts from")
        usual = tuple(float(frame[c].mean()) for c in self.columns)
        return Vocabulary(self.templates, self.levels, self.bucket, self.lines, usual)

    # ------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"format": VOCAB_FORMAT, "version": VOCAB_VERSION,
                "templates": [[tid, text] for tid, text in self.templates], "levels": list(self.levels),
                "bucket": self.bucket, "lines": self.lines, "usual": list(self.usual)}

    @classmethod
    def from_dict(cls, data: Any, what: str = "log vocabulary") -> Vocabulary:
        try:
            return cls._from_dict(data)
        except UserError as exc:
            raise UserError(f"{what}: {exc}") from None

    @classmethod
    def _from_dict(cls, data: Any) -> Vocabulary:
        if not isinstance(data, dict):
            raise UserError("not a JSON object")
        if data.get("format") != VOCAB_FORMAT:
            raise UserError(f"not a {VOCAB_FORMAT} object")
        if data.get("version") != VOCAB_VERSION:
            raise UserError(f"unsupported version {data.get('version')!r} (this reader knows {VOCAB_VERSION})")
        extra = set(data) - {"format", "version", "templates", "levels", "bucket", "lines", "usual"}
        if extra:
            raise UserError(f"unknown keys {sorted(extra)}")
        templates, levels, usual = data.get("templates"), data.get("levels", []), data.get("usual", [])
        if not isinstance(templates, list) or not all(isinstance(t, list) and len(t) == 2 for t in templates):
            raise UserError("templates must be a list of [id, text] pairs")
        if not isinstance(levels, list):
            raise UserError("levels must be a list of strings")
        if not isinstance(usual, list):
            raise UserError("usual must be a list of numbers")
        return cls(tuple(tuple(t) for t in templates), tuple(levels), data.get("bucket"), data.get("lines"),
                   tuple(usual))


# ------------------------------------------------------------------------------------- counting
@dataclass
class CountRow:
    """One finished bucket / window."""

    time: pd.Timestamp | None  # bucket start; line mode: the last line's timestamp
    first_line: int | None  # None for an empty bucket
    last_line: int | None
    values: np.ndarray  # float64, one per Vocabulary.columns
    alert: bool = False  # any line of the row carries an alert label (bgl / thunderbird)
    new_count: int = 0
    new_templates: list[tuple[int, str]] = field(default_factory=list)  # (line, content), the first few


class LogCounter:
    """Records in, finished rows out (module docstring). `add` returns the rows it closed."""

    def __init__(self, vocab: Vocabulary, max_empty: int = 1440) -> None:
        self.vocab = vocab
        self.max_empty = int(max_empty)
        self._col = {tid: k for k, (tid, _) in enumerate(vocab.templates)}
        self._other = len(vocab.templates)
        self._total = self._other + 1
        self._levels = {lv: self._total + 1 + k for k, lv in enumerate(vocab.levels)}
        self._level_other = self._total + 1 + len(vocab.levels) if vocab.levels else None
        self._step = pd.Timedelta(pd.tseries.frequencies.to_offset(vocab.bucket)) if vocab.bucket else None
        self._width = len(vocab.columns)
        self._open: CountRow | None = None
        self._bounds: tuple[CountRow | None, int, int] = (None, 0, 0)
        self._n = 0  # records in the open row
        self.dropped = 0  # bucket mode: untimed records before any timed one
        self.rows_emitted = 0

    def _new_row(self, time: pd.Timestamp | None) -> CountRow:
        return CountRow(time, None, None, np.zeros(self._width))

    def _count(self, row: CountRow, record: LogRecord, template_id: int) -> None:
        v = row.values
        k = self._col.get(template_id)
        v[self._other if k is None else k] += 1
        v[self._total] += 1
        if record.level and self._level_other is not None:
            v[self._levels.get(record.level, self._level_other)] += 1
        if row.first_line is None:
            row.first_line = record.line
        row.last_line = record.line
        row.alert = row.alert or record.label is not None
        if template_id == OTHER_ID:
            row.new_count += 1
            if len(row.new_templates) < MAX_EVENTS_PER_ROW:
                row.new_templates.append((record.line, record.content))
        self._n += 1

    def add(self, record: LogRecord, template_id: int) -> list[CountRow]:
        """Count one record under `template_id` (its template, `OTHER_ID` when none matched)."""
        if self.vocab.lines is not None:
            if self._open is None:
                self._open = self._new_row(None)
            self._count(self._open, record, template_id)
            if record.time is not None:
                self._open.time = record.time
            if self._n >= self.vocab.lines:
                return [self._close()]
            return []
        out: list[CountRow] = []
        opened = self._open
        if record.time is not None and opened is not None and opened.time is not None:
            if self._bounds[0] is not opened:  # the open bucket's [start, end) in ns, once per bucket
                self._bounds = (opened, opened.time.value, (opened.time + self._step).value)
            if self._bounds[1] <= record.time.value < self._bounds[2]:
                self._count(opened, record, template_id)  # the common case: no floor, no Timestamp arithmetic
                return out
        if record.time is not None:
            start = record.time.floor(self._step)
            if self._open is None:
                self._open = self._new_row(start)
            elif start > self._open.time:
                gap = int((start - self._open.time) / self._step) - 1
                last = self._open.time
                out.append(self._close())
                if gap <= self.max_empty:
                    for k in range(1, gap + 1):
                        out.append(self._emit(self._new_row(last + k * self._step)))
                self._open = self._new_row(start)
        elif self._open is None:
            self.dropped += 1
            return out
        self._count(self._open, record, template_id)
        return out

    def _emit(self, row: CountRow) -> CountRow:
        self.rows_emitted += 1
        return row

    def _close(self) -> CountRow:
        row, self._open, self._n = self._open, None, 0
        return self._emit(row)

    def flush(self) -> list[CountRow]:
        """Close the open row (a partial line window or the current bucket), if any."""
        return [self._close()] if self._open is not None and self._n > 0 else []


@dataclass
class LogCounts:
    """A batch of rows as a frame: `time`, `first_line`, `last_line`, then `vocab.columns`."""

    frame: pd.DataFrame
    columns: dict[str, str]  # feature column → template text (or a phrase for other/total/levels)
    alerts: np.ndarray  # bool per row: any alert-labelled line in it
    events: list[tuple[int, str]]  # new-template events (line, content), the first few of each row
    new_count: int = 0

    @property
    def values(self) -> np.ndarray:
        return self.frame[list(self.columns)].to_numpy(dtype=float)


def rows_frame(rows: Sequence[CountRow], vocab: Vocabulary) -> LogCounts:
    cols = vocab.columns
    values = np.vstack([r.values for r in rows]) if rows else np.zeros((0, len(cols)))
    frame = pd.DataFrame(values, columns=cols)
    frame.insert(0, "time", pd.to_datetime(pd.Series([r.time for r in rows], dtype=object)))
    frame.insert(1, "first_line", pd.array([r.first_line for r in rows], dtype="Int64"))
    frame.insert(2, "last_line", pd.array([r.last_line for r in rows], dtype="Int64"))
    events = [e for r in rows for e in r.new_templates]
    return LogCounts(frame, vocab.column_text, np.array([r.alert for r in rows], dtype=bool), events,
                     sum(r.new_count for r in rows))


def count_frame(records: Iterable[LogRecord], vocab: Vocabulary, template_ids: Iterable[int] | None = None,
                miner: TemplateMiner | None = None, flush: bool = True) -> LogCounts:
    """Count a whole list of records with `LogCounter` (the same code as a live stream). Template
    ids come from `template_ids` (aligned with `records`) or from `miner.match` (match-only)."""
    if template_ids is None and miner is None:
        raise UserError("count_frame needs template ids or a template miner to match with")
    counter = LogCounter(vocab)
    rows: list[CountRow] = []
    ids = iter(template_ids) if template_ids is not None else None
    for record in records:
        tid = next(ids) if ids is not None else miner.match_id(record.content)
        rows.extend(counter.add(record, tid))
    if flush:
        rows.extend(counter.flush())
    return rows_frame(rows, vocab)


def build_vocabulary(records: Sequence[LogRecord], miner: TemplateMiner, top_k: int = DEFAULT_TOP_K, *,
                     bucket: str | None = None, lines: int | None = None,
                     template_ids: Sequence[int] | None = None) -> tuple[Vocabulary, LogCounts]:
    """The vocabulary of training `records` (ids from `template_ids`, else `miner.match`), with the
    usual counts of its training rows, and those rows."""
    ids = list(template_ids) if template_ids is not None else [miner.match_id(r.content) for r in records]
    if len(ids) != len(records):
        raise UserError(f"{len(ids)} template ids for {len(records)} records")
    vocab = Vocabulary.fit(ids, miner.templates(), (r.level for r in records), top_k, bucket=bucket, lines=lines)
    counts = count_frame(records, vocab, ids)
    return vocab.with_usual(counts.frame), counts


# ------------------------------------------------------------------------------------- explaining
def _fmt(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def explain_row(row: Mapping[str, float] | pd.Series, vocab: Vocabulary, top: int = 3,
                contributions: Mapping[str, float] | None = None) -> list[str]:
    """The templates (and `other`) that contributed most to a row, as text:
    `"<template>: 312 in 1 min (usual 4.0 = training mean)"`. Ranked by `contributions` (the
    detector's per-column share of the score) when given, else by the count's excess over its
    usual (training mean per row); only rows above their usual are named."""
    if not vocab.usual:
        raise UserError("the vocabulary has no usual counts (fit it with with_usual on training rows)")
    usual = vocab.usual_of()
    text = vocab.column_text
    names = [f"t{tid}" for tid, _ in vocab.templates] + ["other"]
    ranked = []
    for col in names:
        count = float(row[col])
        excess = count - usual[col]
        if excess <= 0:
            continue
        key = float(contributions[col]) if contributions is not None and col in contributions else excess
        ranked.append((-key, -excess, col, count))
    ranked.sort()
    span = vocab.span
    return [f"{text[col]}: {_fmt(count)} in {span} (usual {usual[col]:.1f} = training mean)"
            for _, _, col, count in ranked[:top]]
