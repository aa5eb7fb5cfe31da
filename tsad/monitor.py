"""The live monitor behind `ae tsad monitor`: records in, causal scores, debounced alerts out.

Records are scored in micro-batches (whatever has arrived, up to `batch` records) against a ring
buffer of the last `context_rows` rows (window − 1, plus smooth − 1), so each score equals the
causal score `detect` gives for the same row. A missing reading is filled with the channel's last
value (the causal form of the gap policy). Malformed records are counted, logged with their line number and skipped.
State (input position, buffer, open alert, output sizes) is checkpointed atomically every
`checkpoint_every` records, on SIGINT/SIGTERM and at the end; see tsad.stream for why that makes
output exactly-once across restarts.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.artifact import directory_hash
from core.errors import UserError
from tsad.detector import WindowDetector
from tsad.stream import AlertDebouncer, MonitorState, Record, RecordParser, Rejected, follow_lines

log = logging.getLogger(__name__)


@dataclass
class MonitorStats:
    records: int = 0
    rejected: int = 0
    alerts: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class _Output:
    """An append-only JSON-lines sink (a file we can cut back on resume, or stdout)."""

    def __init__(self, target: str | None, resume_bytes: int | None) -> None:
        self.path = None if target in (None, "-") else Path(target)
        if self.path is None:
            self.fh: IO[str] = sys.stdout
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_bytes is not None and self.path.exists():
            with open(self.path, "r+b") as fh:
                fh.truncate(resume_bytes)
        elif resume_bytes is None and self.path.exists():
            self.path.write_bytes(b"")
        self.fh = open(self.path, "a", encoding="utf-8")

    def write(self, obj: dict[str, Any]) -> None:
        self.fh.write(json.dumps(obj, default=_json) + "\n")

    def size(self) -> int | None:
        self.fh.flush()
        return None if self.path is None else self.path.stat().st_size

    def close(self) -> None:
        self.fh.flush()
        if self.path is not None:
            self.fh.close()


def _json(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


class Monitor:
    def __init__(self, model_dir: str | Path, input_path: str | None = None, fmt: str = "csv",
                 alerts: str | None = "-", scores: str | None = None, state_path: str | Path | None = None,
                 follow: bool = False, cooldown: int = 10, checkpoint_every: int = 1000, batch: int = 32,
                 top_channels: int = 3, device: str = "cpu", poll_seconds: float = 0.2,
                 idle_timeout: float | None = None) -> None:
        self.detector = WindowDetector.load(model_dir, device=device)
        self.model_hash = directory_hash(model_dir)
        self.input_path, self.follow, self.batch = input_path, follow, batch
        if batch < 1 or checkpoint_every < 1:
            raise UserError("--batch and --checkpoint-every must be at least 1")
        self.checkpoint_every, self.top_channels = checkpoint_every, top_channels
        self.poll_seconds, self.idle_timeout = poll_seconds, idle_timeout
        self.state_path = Path(state_path) if state_path else None
        self.parser = RecordParser(self.detector.channel_names_, self.detector.time_col_, fmt)
        self.debouncer = AlertDebouncer(cooldown, self.detector.threshold_.threshold_)
        self.state = MonitorState(model_hash=self.model_hash, input_path=input_path)
        resume = self.state_path is not None and self.state_path.exists()
        if resume:
            self.state = MonitorState.load(self.state_path)
            if self.state.model_hash != self.model_hash:
                raise UserError(f"state file {self.state_path} belongs to another model; remove it to start over")
            self.parser.restore(self.state.parser)
            self.debouncer.restore(self.state.debouncer)
        self.alerts = _Output(alerts, self.state.alerts_bytes if resume else None)
        self.scores = _Output(scores, self.state.scores_bytes if resume else None) if scores else None
        keep, c = self.detector.context_rows, len(self.detector.channel_names_)
        buffer = np.asarray(self.state.buffer, dtype=float).reshape(-1, c)
        self.buffer = buffer[max(0, len(buffer) - keep):]
        self.stats = MonitorStats(records=self.state.records, rejected=self.state.rejected)
        self._stop = False

    # ------------------------------------------------------------------------------------ loop
    def _lines(self):  # noqa: ANN202 - generator of (line, offset, inode)
        if self.input_path in (None, "-"):
            for line in sys.stdin:
                yield line.rstrip("\r\n"), 0, None
            return
        yield from follow_lines(self.input_path, self.state.offset, self.state.inode, follow=self.follow,
                                poll_seconds=self.poll_seconds, idle_timeout=self.idle_timeout,
                                stop=lambda: self._stop, yield_idle=True)

    def run(self) -> MonitorStats:
        t0 = time.perf_counter()
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            self._stop = True

        for s in previous:
            try:
                signal.signal(s, handler)
            except ValueError:  # not the main thread (tests): rely on the caller
                pass
        pending: list[tuple[Record, float]] = []
        since_checkpoint = 0
        try:
            for line, offset, inode in self._lines():
                if line is not None:
                    self.state.line_no += 1
                    arrived = time.perf_counter()
                    parsed = self.parser.parse(line, self.state.line_no)
                    if isinstance(parsed, Rejected):
                        self.stats.rejected += 1
                        log.warning("line %d skipped: %s", parsed.line_no, parsed.reason)
                    elif parsed is not None:
                        pending.append((parsed, arrived))
                if pending and (line is None or len(pending) >= self.batch):
                    since_checkpoint += len(pending)
                    self._score(pending)
                    pending = []
                if not pending:
                    self.state.offset, self.state.inode = offset, inode
                    if since_checkpoint >= self.checkpoint_every:
                        self.checkpoint()
                        since_checkpoint = 0
                if self._stop:
                    break
            if pending:
                self._score(pending)
                self.state.offset, self.state.inode = offset, inode
            if not self._stop:  # end of input: close what is open
                final = self.debouncer.close()
                if final:
                    self._emit_alert(final)
            self.checkpoint()
        finally:
            for s, h in previous.items():
                try:
                    signal.signal(s, h)
                except ValueError:
                    pass
            self.alerts.close()
            if self.scores:
                self.scores.close()
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    def _fill(self, values: np.ndarray) -> np.ndarray:
        last = self.buffer[-1] if len(self.buffer) else None
        for row in values:
            bad = ~np.isfinite(row)
            if bad.any():
                if last is None:
                    row[bad] = 0.0 if not np.isfinite(row).any() else np.nanmean(row)
                else:
                    row[bad] = last[bad]
            last = row
        return values

    def _score(self, batch: list[tuple[Record, float]]) -> None:
        values = self._fill(np.vstack([r.values for r, _ in batch]))
        data = np.vstack([self.buffer, values]) if len(self.buffer) else values
        result = self.detector.score(data)
        n = len(batch)
        scores, probs = result.score[-n:], result.score_prob[-n:]
        flags, contrib = result.is_anomaly[-n:], result.contributions[-n:]
        done = time.perf_counter()
        names = self.detector.channel_names_
        for j, (rec, arrived) in enumerate(batch):
            index = self.stats.records + j
            when = rec.timestamp.isoformat() if rec.timestamp is not None else str(index)
            score = float(scores[j]) if np.isfinite(scores[j]) else None
            order = np.argsort(-np.nan_to_num(contrib[j], nan=0.0))[: self.top_channels]
            top = [names[i] for i in order if np.isfinite(contrib[j][i]) and contrib[j][i] > 0]
            if self.scores is not None:
                self.scores.write({"event": "score", "timestamp": when, "line": rec.line_no, "score": score,
                                   "score_prob": float(probs[j]), "is_anomaly": bool(flags[j])})
            alert = self.debouncer.update(index, when, score or 0.0, float(probs[j]), bool(flags[j]), top)
            if alert:
                self._emit_alert(alert)
            self.stats.latencies_ms.append((done - arrived) * 1000.0)
        self.stats.records += n
        self.buffer = data[max(0, len(data) - self.detector.context_rows):]

    def _emit_alert(self, alert: dict[str, Any]) -> None:
        self.alerts.write(alert)
        self.stats.alerts += 1

    def checkpoint(self) -> None:
        if self.state_path is None:
            self.alerts.size()
            return
        st = self.state
        st.records, st.rejected = self.stats.records, self.stats.rejected
        st.buffer = self.buffer.tolist()
        st.parser, st.debouncer = self.parser.state(), self.debouncer.state()
        st.alerts_bytes = self.alerts.size()
        st.scores_bytes = self.scores.size() if self.scores else None
        st.save(self.state_path)
