"""Live monitoring plumbing: follow a growing file, parse records defensively, debounce alerts, and
persist state so a restarted monitor resumes exactly where it stopped.

Exactly-once output: the state file records, atomically and together, the input position (byte
offset and inode), the ring buffer, the open alert and the byte size of the alerts file. On resume
the alerts file is cut back to that size, so lines written after the last checkpoint (and before a
kill) are written again exactly once rather than duplicated.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.jobs.atomic import atomic_write_text
from core.jobs.tables import separator_of
from core.jsontext import parse_json
from core.typecheck import check_field_types
from tsad.ingest import DEFAULT_DUPLICATES, Accepted, CausalIngest, Layout, LineSplitter, Rejected, Rows

__all__ = ["AlertDebouncer", "MonitorState", "Record", "RecordParser", "Rejected", "follow_lines"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


# ----------------------------------------------------------------------------------------- input
def follow_lines(path: str | os.PathLike[str], offset: int = 0, inode: int | None = None, follow: bool = False,
                 poll_seconds: float = 0.2, idle_timeout: float | None = None,
                 stop: Any = None, yield_idle: bool = False) -> Iterator[tuple[str | None, int, int]]:
    """Yield (line, offset after the line, inode) from a file, like `tail -F` when `follow`.

    Survives rotation (the path now names a new file: start it from 0) and truncation (the file got
    shorter than our offset: start again from 0). A partial last line is held back until its newline
    arrives. `stop()` returning True ends following; `idle_timeout` ends it after that many seconds
    without new data. With `yield_idle`, a `(None, offset, inode)` marks each wait for new data,
    so a caller can flush what it has batched.
    """
    path = Path(path)
    fh: IO[bytes] | None = None
    idle_since = time.monotonic()
    pending = b""
    try:
        while True:
            if fh is None:
                try:
                    fh = open(path, "rb")
                except FileNotFoundError:
                    if not follow:
                        raise UserError(f"input {path} does not exist") from None
                    time.sleep(poll_seconds)
                    continue
                st = os.fstat(fh.fileno())
                if inode is not None and st.st_ino != inode:
                    offset = 0  # a different file than the state remembers: rotated
                if offset > st.st_size:
                    offset = 0  # truncated while we were away
                inode = st.st_ino
                fh.seek(offset)
                pending = b""
            chunk = fh.readline()
            if chunk:
                if not chunk.endswith(b"\n"):
                    if not follow:  # a final line without newline still counts at end of input
                        offset += len(chunk)
                        yield chunk.decode("utf-8", errors="replace"), offset, inode
                        continue
                    pending += chunk
                    continue
                idle_since = time.monotonic()
                line = pending + chunk
                pending = b""
                offset += len(chunk)
                yield line.decode("utf-8", errors="replace").rstrip("\r\n"), offset, inode
                continue
            if not follow:
                return
            if stop is not None and stop():
                return
            if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                return
            if pending:  # keep the partial line in the file for the next read
                fh.seek(offset)
                pending = b""
            if yield_idle:
                yield None, offset, inode
            try:
                st = os.stat(path)
                if st.st_ino != inode or st.st_size < offset:
                    fh.close()
                    fh = None
                    offset = 0
                    log.info("input %s was rotated or truncated; reading it from the start", path)
                    continue
            except FileNotFoundError:
                pass  # rotated away and not yet recreated: keep reading the old handle
            time.sleep(poll_seconds)
    finally:
        if fh is not None:
            fh.close()


MAX_LINE_BYTES = 1 << 20  # a "line" longer than this is cut here, rejected, and the rest of it skipped


def pipe_lines(stream: IO[Any], stop: Any = None, poll_seconds: float = 0.1) -> Iterator[tuple[str | None, int, None]]:
    """Yield (line, bytes read, None) from a pipe or terminal, never blocking longer than `poll_seconds`.

    While no data arrives it yields `(None, …)` every `poll_seconds`, so the caller can score what it
    has batched (an alert is never held back waiting for more input) and notice `stop()` (SIGTERM on
    an idle pipe is honoured within a poll, not when the next line happens to arrive). A stream
    without a file descriptor (tests) is iterated plainly.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:
        consumed = 0
        for line in stream:
            line = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
            consumed += len(line)
            yield line.rstrip("\r\n"), consumed, None
        return
    import select

    buffered, consumed, discarding = b"", 0, False
    while True:
        if stop is not None and stop():
            return
        try:
            ready, _, _ = select.select([fd], [], [], poll_seconds)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for other runtimes
            ready = []
        if not ready:
            yield None, consumed, None
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:  # end of input
            if buffered and not discarding:
                yield buffered.decode("utf-8", errors="replace").rstrip("\r"), consumed + len(buffered), None
            return
        *lines, rest = (buffered + chunk).split(b"\n")
        for raw in lines:
            consumed += len(raw) + 1
            if discarding:  # the tail of an over-long line, already rejected
                discarding = False
                continue
            yield raw.decode("utf-8", errors="replace").rstrip("\r"), consumed, None
        if len(rest) > MAX_LINE_BYTES and not discarding:
            log.warning("a line longer than %d bytes was cut there; the rest of it is skipped", MAX_LINE_BYTES)
            yield rest[:MAX_LINE_BYTES].decode("utf-8", errors="replace"), consumed, None
            consumed += len(rest)
            rest, discarding = b"", True
        elif discarding:
            consumed += len(rest)
            rest = b""
        buffered = rest


class StreamSplitter(LineSplitter):
    """A LineSplitter for live CSV streams, which may start without their header.

    `tail -F file` prints the last lines only, so the header may never come. The model knows its
    columns, so a first line that names none of them is read as data in the model's own column order
    (`columns`: the time column, then the channels, unless given). A line that names every column is
    a header wherever it comes (a rotated file starts with one) and is checked; a first line that
    names some columns but not all, or holds no number at all, is a wrong header (exit 2, as for
    files). Later, such a line is rejected like any bad record.
    """

    def __init__(self, layout: Layout, fmt: str = "csv", source: str = "input",
                 columns: list[str] | None = None) -> None:
        super().__init__(layout, fmt, source)
        self.implicit = list(columns) if columns else list(layout.columns)
        missing = [c for c in layout.columns if c not in self.implicit]
        if missing:
            raise UserError(f"--columns lacks the model's column(s) {', '.join(missing)}")
        self._names = set(layout.columns)

    def split(self, line: str, line_no: int) -> list[Any] | Rejected | None:
        if self.fmt != "csv" or not line.strip():
            return super().split(line, line_no)
        line = line.lstrip("\ufeff")
        if self.header is None:
            self.sep = separator_of(line)
        try:
            fields = self._fields(line)
        except csv.Error as exc:
            if self.header is None:
                self._adopt(self.implicit)
            return Rejected(line_no, f"malformed CSV line: {exc}")
        named = self._names.intersection(fields)
        if named or (self.header is None and not any(map(_is_number, fields))):
            if self.header is None or named == self._names:
                self._set_header(line)  # checked: a first line naming only some columns is a wrong header
                return None
            return Rejected(line_no, f"header-like line lacks column(s) {', '.join(sorted(self._names - named))}")
        if self.header is None:
            self._adopt(self.implicit)
            log.info("%s: no header line; reading columns as %s", self.source, ",".join(self.implicit))
        return super().split(line, line_no)

    def _adopt(self, header: list[str]) -> None:
        self.header, self._index = header, [header.index(c) for c in self.layout.columns]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Record:
    line_no: int
    timestamp: pd.Timestamp | None
    values: np.ndarray


class RecordParser:
    """Text lines → records of the model's channels, through tsad.ingest.

    `split` each line as it arrives (CSV needs a header line naming the time column, if any, and
    every channel; JSON lines need the same keys in each object), then `ingest` a micro-batch of
    split lines: number and timestamp checks, time order (out-of-order and duplicate timestamps are
    rejected) and the causal gap fill, with `start` as each channel's value before its first reading.
    `parse` does both for one line. A bad line becomes a `Rejected`; `state()` is plain JSON.
    """

    def __init__(self, channels: list[str], time_col: str | None, fmt: str = "csv",
                 start: np.ndarray | list[float] | None = None, source: str = "input",
                 duplicates: str = DEFAULT_DUPLICATES, columns: list[str] | None = None) -> None:
        self.layout = Layout(list(channels), time_col or None)
        self.splitter = StreamSplitter(self.layout, fmt, source, columns)
        self.causal = CausalIngest(self.layout, start, duplicates=duplicates, source=source)

    def split(self, line: str, line_no: int) -> list[Any] | Rejected | None:
        return self.splitter.split(line, line_no)

    def ingest(self, line_nos: list[int], cells: list[list[Any]]) -> tuple[Accepted, list[Rejected]]:
        return self.causal.push(Rows.from_cells(self.layout, line_nos, cells))

    def parse(self, line: str, line_no: int) -> Record | Rejected | None:
        got = self.split(line, line_no)
        if got is None or isinstance(got, Rejected):
            return got
        accepted, rejected = self.ingest([line_no], [got])
        if rejected:
            return rejected[0]
        stamp = None if accepted.timestamps is None else pd.Timestamp(accepted.timestamps[0])
        return Record(line_no, stamp, accepted.values[0])

    def state(self) -> dict[str, Any]:
        return {**self.splitter.state(), "ingest": self.causal.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.splitter.restore(state)
        # a state file from before tsad.ingest holds only the last timestamp, at the top level
        self.causal.restore(state.get("ingest", state))


# ---------------------------------------------------------------------------------------- alerts
@dataclass
class OpenAlert:
    start: str
    start_index: int
    peak_score: float
    peak_prob: float
    peak_time: str
    peak_index: int
    top_channels: list[str]
    records: int = 1
    last_anomalous_index: int = 0
    last_anomalous_time: str = ""


class AlertDebouncer:
    """One alert per anomalous stretch: it opens at the first anomalous record and closes after
    `cooldown` consecutive normal records, carrying its start, end and peak."""

    def __init__(self, cooldown: int = 10, threshold: float = math.nan) -> None:
        if cooldown < 0:
            raise UserError("--cooldown must be non-negative")
        self.cooldown = cooldown
        self.threshold = threshold
        self.open: OpenAlert | None = None
        self.normal_run = 0

    def update(self, index: int, when: str, score: float, prob: float, anomalous: bool,
               top_channels: list[str]) -> dict[str, Any] | None:
        """Feed one scored record; returns a finished alert when one closes."""
        if anomalous:
            self.normal_run = 0
            if self.open is None:
                self.open = OpenAlert(start=when, start_index=index, peak_score=score, peak_prob=prob,
                                      peak_time=when, peak_index=index, top_channels=top_channels,
                                      last_anomalous_index=index, last_anomalous_time=when)
            else:
                a = self.open
                a.records += 1
                a.last_anomalous_index, a.last_anomalous_time = index, when
                if score > a.peak_score:
                    a.peak_score, a.peak_prob, a.peak_time, a.peak_index = score, prob, when, index
                    a.top_channels = top_channels
            return None
        if self.open is None:
            return None
        self.normal_run += 1
        if self.normal_run > self.cooldown:
            return self.close()
        return None

    def close(self) -> dict[str, Any] | None:
        if self.open is None:
            return None
        a, self.open, self.normal_run = self.open, None, 0
        return {"event": "alert", "start": a.start, "end": a.last_anomalous_time, "peak_time": a.peak_time,
                "timestamp": a.peak_time, "score": a.peak_score, "score_prob": a.peak_prob,
                "threshold": self.threshold, "anomalous_records": a.records,
                "top_channels": a.top_channels, "start_index": a.start_index,
                "end_index": a.last_anomalous_index}

    def state(self) -> dict[str, Any]:
        return {"open": None if self.open is None else asdict(self.open), "normal_run": self.normal_run}

    def restore(self, state: dict[str, Any]) -> None:
        self.open = OpenAlert(**state["open"]) if state.get("open") else None
        self.normal_run = int(state.get("normal_run", 0))


# ----------------------------------------------------------------------------------------- state
@dataclass
class MonitorState:
    """Everything needed to resume: input position, ring buffer, parser, debouncer, outputs."""

    model_hash: str
    input_path: str | None = None
    offset: int = 0
    inode: int | None = None
    line_no: int = 0
    records: int = 0
    rejected: int = 0
    rejected_lines: list[int] = field(default_factory=list)  # the first few
    buffer: list[list[float]] = field(default_factory=list)
    parser: dict[str, Any] = field(default_factory=dict)
    debouncer: dict[str, Any] = field(default_factory=dict)
    alerting: dict[str, Any] = field(default_factory=dict)  # the saved alerting's rolling state
    adapt: dict[str, Any] | None = None  # --adapt: tsad.adapt.OnlineAdapter.state()
    adapted_weights: str | None = None  # --adapt: the safetensors file beside this one holding them
    alerts_bytes: int | None = None
    scores_bytes: int | None = None
    version: int = STATE_VERSION

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MonitorState:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise UserError(f"state file {path} cannot be read: {exc.strerror}") from None
        raw = parse_json(text, f"state file {path} is corrupt:")
        if not isinstance(raw, dict):
            raise UserError(f"state file {path} is corrupt: not a JSON object")
        if raw.get("version") != STATE_VERSION:
            raise UserError(f"state file {path} has version {raw.get('version')}, expected {STATE_VERSION}")
        try:
            state = cls(**raw)
            check_field_types(state, "state")
        except (TypeError, UserError) as exc:
            raise UserError(f"state file {path} is corrupt: {exc}") from None
        return state
