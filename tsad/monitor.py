"""The live monitor behind `ae tsad monitor`: records in, causal scores, debounced alerts out.

Lines are split as they arrive; micro-batches (whatever has arrived, up to `batch` records) go
through tsad.ingest (the same row checks, time order and causal gap fill as `detect` and `score`:
a missing reading takes the channel's last value, or its training mean before the channel's first
reading) and are scored after a ring buffer of the last `context_rows` rows (window − 1, plus
smooth − 1), so each score equals the causal score `detect` and `score` give for the same row.
Rejected records are counted, logged with their line number and reason, and skipped.
With `adapt` (--adapt, tsad.adapt) the detector keeps learning from the rows it judged normal; its
adapted weights go to `STATE.adapted-<round>.safetensors` beside the state, written before the state
that names them, so a checkpoint always points at a complete file.
State (input position, buffer, open alert, output sizes) is checkpointed atomically every
`checkpoint_every` records, on SIGINT/SIGTERM and at the end; see tsad.stream for why that makes
output exactly-once across restarts. On resume, records at or before the checkpoint (a replayed
stream, a rotated file read again) are skipped silently and counted once in the summary.

Operators need it prompt and observable: a record waits at most `max_delay` seconds for a batch
to fill, every alert and score line is flushed when written (`fsync` also syncs it), the input is
polled so SIGINT/SIGTERM are honoured within a poll even on an idle pipe, and a status line goes
to stderr on SIGUSR1 and, with `metrics`, to a JSON file rewritten every `metrics_every` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.artifact import directory_hash
from core.device import set_threads
from core.errors import UserError
from core.jobs.atomic import atomic_path, atomic_write_text
from tsad.adapt import OnlineAdapter, check_adaptable
from tsad.batch import score_after, start_values
from tsad.detector import WindowDetector
from tsad.ingest import DEFAULT_DUPLICATES, SEEN, Accepted, Rejected
from tsad.stream import AlertDebouncer, MonitorState, RecordParser, follow_lines, pipe_lines

log = logging.getLogger(__name__)


def install_handlers(signals: list[signal.Signals], handler: Callable[[int, Any], None]) -> dict[int, Any]:
    """Route `signals` to `handler`; returns the previous handlers for `restore_handlers`. Outside
    the main thread (tests) signals cannot be routed, and the caller's handlers stay."""
    previous = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        try:
            signal.signal(s, handler)
        except ValueError:
            pass
    return previous


def restore_handlers(previous: dict[int, Any]) -> None:
    for s, h in previous.items():
        try:
            signal.signal(s, h)
        except ValueError:
            pass


FIRST_REJECTED = 10  # rejected line numbers kept for the summary
LATENCIES_KEPT = 100_000  # per-record scoring latencies kept for percentiles (benchmarks)


@dataclass
class MonitorStats:
    records: int = 0
    rejected: int = 0
    alerts: int = 0
    seconds: float = 0.0
    # the latest LATENCIES_KEPT per-record latencies: a monitor runs for weeks, so nothing per record may grow
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))
    rejected_lines: list[int] = field(default_factory=list)  # the first FIRST_REJECTED
    filled: int = 0  # missing readings filled by the gap policy
    skipped: int = 0  # records at or before the checkpoint, seen by an earlier run
    last_time: str | None = None  # timestamp of the last scored record
    session_records: int = 0  # records scored by this process (for records/s)

    def summary(self) -> str:
        lines = ""
        if self.rejected_lines:
            more = ", ..." if self.rejected > len(self.rejected_lines) else ""
            lines = f" (line {', '.join(map(str, self.rejected_lines))}{more})"
        filled = f", {self.filled} missing reading(s) filled" if self.filled else ""
        skipped = (f", {self.skipped} record(s) at or before the checkpoint skipped (already processed)"
                   if self.skipped else "")
        return (f"monitor: {self.records} records, {self.rejected} rejected{lines}{filled}{skipped}, "
                f"{self.alerts} alert(s) in {self.seconds:.1f} s")

    def status(self, started: float) -> dict[str, Any]:
        """What an operator checks to see the monitor is alive and keeping up."""
        elapsed = max(time.perf_counter() - started, 1e-9)
        lag = None
        if self.last_time is not None:
            try:
                stamp = pd.Timestamp(self.last_time)
                now = pd.Timestamp.now(tz=stamp.tz) if stamp.tz is not None else pd.Timestamp.now()
                lag = round((now - stamp).total_seconds(), 3)
            except ValueError:
                lag = None
        return {"records": self.records, "rejected": self.rejected, "skipped": self.skipped, "alerts": self.alerts,
                "last_timestamp": self.last_time, "lag_seconds": lag, "uptime_seconds": round(elapsed, 3),
                "records_per_second": round(self.session_records / elapsed, 1),
                "updated": pd.Timestamp.now(tz="UTC").isoformat()}


class JsonLinesOutput:
    """An append-only JSON-lines sink (a file we can cut back on resume, or stdout)."""

    def __init__(self, target: str | None, resume_bytes: int | None, fsync: bool = False) -> None:
        self.path = None if target in (None, "-") else Path(target)
        self.fsync = fsync
        if self.path is None:
            self.fh: IO[str] = sys.stdout
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        regular = self.path.is_file()  # /dev/null or a FIFO is written to, never cut back or emptied
        if resume_bytes is not None and regular:
            with open(self.path, "r+b") as fh:
                fh.truncate(resume_bytes)
        elif resume_bytes is None and regular:
            self.path.write_bytes(b"")
        self.fh = open(self.path, "a", encoding="utf-8")

    def write(self, obj: dict[str, Any]) -> None:
        self.fh.write(json.dumps(obj, default=_json) + "\n")

    def flush(self) -> None:
        """Make what was written readable now (and durable with fsync): alerts must not sit in a buffer."""
        self.fh.flush()
        if self.fsync and self.path is not None:
            os.fsync(self.fh.fileno())

    def size(self) -> int | None:
        self.fh.flush()
        return self.path.stat().st_size if self.path is not None and self.path.is_file() else None

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
                 idle_timeout: float | None = None, threads: int | None = 1, duplicates: str = DEFAULT_DUPLICATES,
                 columns: list[str] | None = None, fsync: bool = False, max_delay: float = 0.25,
                 metrics: str | Path | None = None, metrics_every: float = 10.0, adapt: bool = False) -> None:
        # one thread by default: a record or micro-batch at a time gains nothing from more, and on a busy
        # machine torch's all-cores default collapses throughput (see core.device.set_threads); None
        # honours OMP_NUM_THREADS, else leaves torch's current setting
        self.threads = set_threads(threads)
        self.detector = WindowDetector.load(model_dir, device=device)
        if adapt:
            check_adaptable(self.detector.config)
        self.model_hash = directory_hash(model_dir)
        self.input_path, self.follow, self.batch = input_path, follow, batch
        if batch < 1 or checkpoint_every < 1:
            raise UserError("--batch and --checkpoint-every must be at least 1")
        if max_delay < 0 or metrics_every <= 0:
            raise UserError("--max-delay must be non-negative and --metrics-every positive")
        self.checkpoint_every, self.top_channels = checkpoint_every, top_channels
        self.poll_seconds, self.idle_timeout, self.max_delay = poll_seconds, idle_timeout, max_delay
        self.metrics_path = Path(metrics) if metrics else None
        self.metrics_every = metrics_every
        self.state_path = Path(state_path) if state_path else None
        self.parser = RecordParser(self.detector.channel_names_, self.detector.time_col_, fmt,
                                   start=start_values(self.detector),
                                   source="stdin" if input_path in (None, "-") else input_path,
                                   duplicates=duplicates, columns=columns)
        self.debouncer = AlertDebouncer(cooldown, self.detector.alerting_.describe())
        self.state = MonitorState(model_hash=self.model_hash, input_path=input_path)
        resume = self.state_path is not None and self.state_path.exists()
        if resume:
            self.state = MonitorState.load(self.state_path)
            if self.state.model_hash != self.model_hash:
                raise UserError(f"state file {self.state_path} belongs to another model; remove it to start over")
            self.parser.restore(self.state.parser)
            self.parser.causal.resume()  # a replayed stream: what the checkpoint covers is skipped, not rejected
            self.debouncer.restore(self.state.debouncer)
        self.alerts = JsonLinesOutput(alerts, self.state.alerts_bytes if resume else None, fsync)
        self.scores = JsonLinesOutput(scores, self.state.scores_bytes if resume else None, fsync) if scores else None
        keep, c = self.detector.context_rows, len(self.detector.channel_names_)
        buffer = np.asarray(self.state.buffer, dtype=float).reshape(-1, c)
        self.buffer = buffer[max(0, len(buffer) - keep):]
        self.alerting = self.state.alerting or self.detector.alerting_.fresh_state()
        self.adapter = OnlineAdapter(self.detector) if adapt else None
        if resume:
            self._restore_adapter()
        self.stats = MonitorStats(records=self.state.records, rejected=self.state.rejected,
                                  rejected_lines=list(self.state.rejected_lines),
                                  filled=self.parser.causal.counts.missing)
        self._stop = False
        self._report = False

    # ------------------------------------------------------------------------------------ loop
    def _lines(self):  # noqa: ANN202 - generator of (line, offset, inode)
        if self.input_path in (None, "-"):
            for line, _, _ in pipe_lines(sys.stdin, stop=lambda: self._stop, poll_seconds=min(self.poll_seconds, 0.1)):
                yield line, 0, None  # a pipe has no position to resume from: replays are skipped by time
            return
        yield from follow_lines(self.input_path, self.state.offset, self.state.inode, follow=self.follow,
                                poll_seconds=self.poll_seconds, idle_timeout=self.idle_timeout,
                                stop=lambda: self._stop, yield_idle=True)

    def run(self) -> MonitorStats:
        t0 = self._started = time.perf_counter()
        signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])

        def handler(signum: int, frame: Any) -> None:
            if signum == getattr(signal, "SIGUSR1", None):
                self._report = True
            else:
                self._stop = True

        previous = install_handlers(signals, handler)
        pending: list[tuple[int, list[Any] | Rejected, float]] = []  # split lines: (line number, cells, arrival)
        since_checkpoint = 0
        next_metrics = t0
        try:
            for line, offset, inode in self._lines():
                now = time.perf_counter()
                if line is not None:
                    self.state.line_no += 1
                    cells = self.parser.split(line, self.state.line_no)
                    if cells is not None:
                        pending.append((self.state.line_no, cells, now))
                if pending and (line is None or len(pending) >= self.batch or now - pending[0][2] >= self.max_delay):
                    since_checkpoint += len(pending)
                    self._score(pending)
                    pending = []
                if not pending:
                    self.state.offset, self.state.inode = offset, inode
                    if since_checkpoint >= self.checkpoint_every:
                        self.checkpoint()
                        since_checkpoint = 0
                if self._report:
                    self._report = False
                    log.warning("status: %s", json.dumps(self.stats.status(t0)))
                if self.metrics_path is not None and now >= next_metrics:
                    self._write_metrics()
                    next_metrics = now + self.metrics_every
                if self._stop:
                    break
            if pending:
                self._score(pending)
                self.state.offset, self.state.inode = offset, inode
            if not self._stop:  # end of input: a row held back by the duplicates policy, then close what is open
                held = self.parser.causal.flush()
                self._score_accepted(held, dict.fromkeys(held.line_no.tolist(), time.perf_counter()))
                final = self.debouncer.close()
                if final:
                    self._emit_alert(final)
            self.checkpoint()
            if self.metrics_path is not None:
                self._write_metrics()
        finally:
            restore_handlers(previous)
            self.alerts.close()
            if self.scores:
                self.scores.close()
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    def _write_metrics(self) -> None:
        atomic_write_text(self.metrics_path, json.dumps(self.stats.status(self._started), indent=1) + "\n")

    def _reject(self, rejected: list[Rejected]) -> None:
        for r in rejected:
            if r.kind == SEEN:
                self.stats.skipped += 1
                continue
            self.stats.rejected += 1
            if len(self.stats.rejected_lines) < FIRST_REJECTED:
                self.stats.rejected_lines.append(r.line_no)
            log.warning("line %d skipped: %s", r.line_no, r.reason)

    def _score(self, batch: list[tuple[int, list[Any] | Rejected, float]]) -> None:
        good = [b for b in batch if not isinstance(b[1], Rejected)]
        accepted, rejected = self.parser.ingest([b[0] for b in good], [b[1] for b in good])
        self._reject(sorted(rejected + [b[1] for b in batch if isinstance(b[1], Rejected)], key=lambda r: r.line_no))
        self.stats.filled = self.parser.causal.counts.missing
        self._score_accepted(accepted, {line_no: arrived for line_no, _, arrived in batch})

    def _score_accepted(self, accepted: Accepted, arrival: dict[int, float]) -> None:
        if not len(accepted):
            return
        result, self.buffer, self.alerting = score_after(self.detector, self.buffer, accepted.values, self.alerting,
                                                         self.adapter)
        done = time.perf_counter()
        names = self.detector.channel_names_
        # each row's channels by their share of the score, largest first (one sort for the batch)
        shares = result.contributions
        ranked = np.argsort(-np.nan_to_num(shares, nan=0.0), axis=1)[:, : self.top_channels]
        for j, line_no in enumerate(accepted.line_no.tolist()):
            index = self.stats.records + j
            when = str(index) if accepted.timestamps is None else pd.Timestamp(accepted.timestamps[j]).isoformat()
            score = float(result.score[j]) if np.isfinite(result.score[j]) else None
            prob = float(result.score_prob[j]) if score is not None else None
            flag, contrib = bool(result.is_anomaly[j]), shares[j]
            top = [names[i] for i in ranked[j] if np.isfinite(contrib[i]) and contrib[i] > 0]
            if self.scores is not None:
                line = {"event": "score", "timestamp": when, "line": line_no, "score": score, "score_prob": prob,
                        "is_anomaly": flag}
                if result.alert_score is not None:
                    a = float(result.alert_score[j])
                    line["alert_score"] = a if np.isfinite(a) else None
                self.scores.write(line)
            alert = self.debouncer.update(index, when, score or 0.0, prob or 0.0, flag, top)
            if alert:
                self._emit_alert(alert)
            self.stats.latencies_ms.append((done - arrival[line_no]) * 1000.0)
        self.stats.records += len(accepted)
        self.stats.session_records += len(accepted)
        self.stats.last_time = when
        if self.scores is not None:
            self.scores.flush()

    def _emit_alert(self, alert: dict[str, Any]) -> None:
        self.alerts.write(alert)
        self.alerts.flush()
        self.stats.alerts += 1

    def checkpoint(self) -> None:
        if self.state_path is None:
            self.alerts.size()
            return
        st = self.state
        st.records, st.rejected, st.rejected_lines = self.stats.records, self.stats.rejected, self.stats.rejected_lines
        st.buffer, st.alerting = self.buffer.tolist(), self.alerting
        st.parser, st.debouncer = self.parser.state(), self.debouncer.state()
        st.alerts_bytes = self.alerts.size()
        st.scores_bytes = self.scores.size() if self.scores else None
        if self.adapter is not None:
            st.adapt = self.adapter.state()
            name = f"{self.state_path.name}.adapted-{self.adapter.rounds}.safetensors"
            # the weights first, so the state names a complete file; a round's weights never change, so a
            # checkpoint within the same round (or right after a resume) has nothing new to write
            if self.adapter.weights is not None and name != st.adapted_weights:
                with atomic_path(self.state_path.with_name(name)) as tmp:
                    save_file({k: v.contiguous() for k, v in self.adapter.weights.items()}, str(tmp))
                st.adapted_weights = name
        st.save(self.state_path)
        for stale in self.state_path.parent.glob(f"{self.state_path.name}.adapted-*.safetensors"):
            if stale.name != st.adapted_weights:
                stale.unlink(missing_ok=True)

    def _restore_adapter(self) -> None:
        """--adapt on resume: the adapter's rows and weights, as the last checkpoint left them; a state
        written with --adapt is not resumed without it, nor the other way round."""
        st, where = self.state, f"state file {self.state_path}"
        if (self.adapter is None) != (st.adapt is None):
            was = "with" if st.adapt is not None else "without"
            raise UserError(f"{where} was written {was} --adapt; run {was} it, or remove the state to start over")
        if self.adapter is None or st.adapt is None:
            return
        weights = None
        if st.adapted_weights:
            path = self.state_path.with_name(Path(st.adapted_weights).name)
            try:
                weights = load_file(str(path))
            except (OSError, SafetensorError) as exc:
                raise UserError(f"{where}: its adapted weights {path.name} cannot be read ({exc})") from None
        self.adapter.restore(st.adapt, weights, where)
