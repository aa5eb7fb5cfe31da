"""Logs as a first-class input of `ae tsad train / detect / monitor`: the log front end and its model.

A *log model* is one directory (written atomically, core.jobs.atomic.atomic_dir) holding:

- `log.json`: the front end's manifest: `{"format": "tsad-log-model", "version": 1, "parser":
  {...}, "files": {"templates.json": sha256, "vocabulary.json": sha256}}`; the parser settings
  are the log format and its options (`regex` for `--log-regex`, the jsonl field names);
- `templates.json`: the template miner's state (tsad.logtemplates, its own plain JSON);
- `vocabulary.json`: the count features' vocabulary with its usual counts (tsad.logfeatures);
- `detector/`: the WindowDetector fitted on the training count rows (a core.artifact model
  directory; its channels are the vocabulary's columns).

Nothing is pickled; loading re-checks the recorded checksums, validates every JSON file with its
own reader and checks the detector's channels against the vocabulary, so a damaged or edited file
is one `UserError` (exit 2 in the CLI).

Training (`train_log_model`): parse the lines (unparsed lines are counted, never fatal), mine
templates on them with the format's documented miner setting (tsad.logtemplates.config_for),
build the vocabulary and count rows per time bucket or per N lines from *match-only* template ids
(the same `match` that scoring uses), and fit the detector on the rows. Scoring (`detect_log`,
`LogMonitor`) runs the same front end in match-only mode: a line matching no training template is
a new-template event (counted under `other`).

The default detector for logs (`LOG_DETECTOR`) follows tsad.logbench: a window of 4 rows scored
causally on its last row (`causal_tail` 1), so a row is judged with the 3 rows before it as
context; the first 3 rows of a scored log have no score (empty, never an alert).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.jobs.atomic import atomic_dir
from core.jsontext import parse_json
from tsad.config import DetectorConfig
from tsad.logfeatures import (
    DEFAULT_TOP_K,
    CountRow,
    LogCounter,
    Vocabulary,
    build_vocabulary,
    explain_row,
    rows_frame,
)
from tsad.logparse import FORMATS, LineParser, LogRecord, ParseReport, make_line_parser
from tsad.logtemplates import OTHER_ID, TemplateMiner, config_for

log = logging.getLogger(__name__)

MODEL_FORMAT = "tsad-log-model"
MODEL_VERSION = 1
MANIFEST = "log.json"
TEMPLATES = "templates.json"
VOCABULARY = "vocabulary.json"
DETECTOR = "detector"
DEFAULT_BUCKET = "1min"
FEATURES = "log1p"  # see features()
RESCORE_ROWS = 4096  # rows rescored at most after each alert (RowScorer)
TOP_EXPLAINED = 3  # contributors named per alerted row
# the detector settings for count rows (tsad.logbench's "dense-w4": as good as its conv twin on count rows
# and ~30x faster to train on a CPU); CLI options override them
LOG_DETECTOR: dict[str, Any] = {
    "window": 4, "network.kind": "dense", "network.hidden": (64, 16), "network.dropout": 0.1,
    "training.epochs": 40, "training.batch_size": 16, "training.val_fraction": 0.0,
    "training.patience": None, "scoring.causal_tail": 1}


def log_detector_config() -> DetectorConfig:
    cfg = DetectorConfig().updated(LOG_DETECTOR)
    cfg.training.patience = None  # `updated` skips None values
    return cfg


def features(values: np.ndarray) -> np.ndarray:
    """What the detector sees of count rows: log(1 + count), so a burst of 300 lines stands out without
    drowning the rows after it (the counts themselves stay in the output and the alert text)."""
    return np.log1p(np.asarray(values, dtype=float))


def is_log_model(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a log model directory (it holds the front end's manifest)."""
    return (Path(path) / MANIFEST).is_file()


# ------------------------------------------------------------------------------------- parser settings
@dataclass(frozen=True)
class ParserSettings:
    """How raw lines become records: tsad.logparse's format and options, plain JSON."""

    format: str = "syslog"
    regex: str | None = None
    time_field: str = "time"
    level_field: str = "level"
    message_field: str = "message"

    def __post_init__(self) -> None:
        self.line_parser()  # unknown format, a regex that does not compile: a UserError now

    @classmethod
    def create(cls, fmt: str, regex: str | None = None) -> ParserSettings:
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise UserError(f"unknown --log-format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if regex is not None:
            fmt = "regex"
        return cls(fmt, regex)

    def line_parser(self, year: int | None = None):  # noqa: ANN201 - (line number, text) -> LogRecord
        if not isinstance(self.format, str):
            raise UserError("the parser format must be a string")
        for name in ("time_field", "level_field", "message_field"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"the parser's {name} must be a string")
        if self.regex is not None and not isinstance(self.regex, str):
            raise UserError("the parser regex must be a string")
        return make_line_parser(self.format, regex=self.regex, year=year, time_field=self.time_field,
                                level_field=self.level_field, message_field=self.message_field)

    @property
    def miner_format(self) -> str:
        """The key of the documented miner setting (tsad.logtemplates.FORMAT_CONFIGS)."""
        return self.format

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "regex": self.regex, "time_field": self.time_field,
                "level_field": self.level_field, "message_field": self.message_field}

    @classmethod
    def from_dict(cls, data: Any) -> ParserSettings:
        if not isinstance(data, dict) or set(data) != {"format", "regex", "time_field", "level_field",
                                                        "message_field"}:
            raise UserError("parser settings must be an object with format, regex, time_field, level_field, "
                            "message_field")
        return cls(**data)


def failure_text(report: ParseReport, source: str) -> str:
    """One line about unparsed lines: the count, the first line numbers and the first reason."""
    text = f"{source}: {report.summary()}"
    if report.failures:
        n, reason = report.failures[0]
        text += f"; line {n}: {reason}"
    return text


def read_records(path: Path, settings: ParserSettings, report: ParseReport) -> list[LogRecord]:
    """Every record of a log file; no parsed line at all is a UserError (one line)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        records = list(LineParser(settings.line_parser(), report).records(fh))
    if not records:
        raise UserError(f"no line of {failure_text(report, str(path))} matches log format {settings.format!r}"
                        if report.lines else f"{path} holds no log line")
    return records


# ------------------------------------------------------------------------------------- the model
def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


@dataclass
class LogModel:
    """The front end (parser settings, template miner, vocabulary) and the detector on its rows."""

    settings: ParserSettings
    miner: TemplateMiner
    vocab: Vocabulary
    detector: Any  # tsad.detector.WindowDetector (imported lazily: torch)

    def match(self, record: LogRecord) -> int:
        return self.miner.match_id(record.content)

    def save(self, path: str | os.PathLike[str], metrics: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"cannot write model directory {path}: a file with that name exists")
        templates = _dumps(self.miner.state())
        vocab = _dumps(self.vocab.to_dict())
        manifest = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "parser": self.settings.to_dict(),
                    "features": FEATURES,
                    "files": {TEMPLATES: _digest(templates), VOCABULARY: _digest(vocab)}}
        with atomic_dir(path) as tmp:
            self.detector.save(tmp / DETECTOR, metrics=metrics)
            (tmp / TEMPLATES).write_bytes(templates)
            (tmp / VOCABULARY).write_bytes(vocab)
            (tmp / MANIFEST).write_bytes(_dumps(manifest))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> LogModel:
        from tsad.detector import WindowDetector

        path = Path(path)
        if not path.is_dir():
            raise UserError(f"model directory {path} does not exist")
        if not is_log_model(path):
            raise UserError(f"{path} is not a log model (no {MANIFEST}); train one with `ae tsad train --format log`")
        manifest = parse_json(_read(path / MANIFEST), f"{path / MANIFEST} is corrupt:")
        if (not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT
                or not isinstance(manifest.get("files"), dict)):
            raise UserError(f"{path / MANIFEST} is not a {MODEL_FORMAT} manifest")
        if manifest.get("features") != FEATURES:
            raise UserError(f"{path / MANIFEST}: unknown features {manifest.get('features')!r} "
                            f"(this version: {FEATURES})")
        if manifest.get("version") != MODEL_VERSION:
            raise UserError(f"{path / MANIFEST} has version {manifest.get('version')!r}; this version reads "
                            f"{MODEL_VERSION}")
        try:
            settings = ParserSettings.from_dict(manifest.get("parser"))
        except (UserError, TypeError) as exc:
            raise UserError(f"{path / MANIFEST}: {exc}") from None
        texts = {}
        for name in (TEMPLATES, VOCABULARY):
            data = _read(path / name)
            if _digest(data) != manifest["files"].get(name):
                raise UserError(f"{path / name} does not match its recorded checksum (edited or damaged); "
                                f"train the model again")
            texts[name] = parse_json(data, f"{path / name} is corrupt:")
        miner = TemplateMiner.from_state(texts[TEMPLATES], f"{path / TEMPLATES}")
        vocab = Vocabulary.from_dict(texts[VOCABULARY], f"{path / VOCABULARY}")
        if not vocab.usual:
            raise UserError(f"{path / VOCABULARY}: no usual counts")
        det = WindowDetector.load(path / DETECTOR, device=device)
        if det.channel_names_ != vocab.columns:
            raise UserError(f"{path}: the detector's channels do not match the vocabulary's columns (damaged?)")
        return cls(settings, miner, vocab, det)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} is missing (damaged log model)") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


@dataclass
class TrainedLog:
    model: LogModel
    report: ParseReport
    rows: int
    templates: int


def train_log_model(path: Path, settings: ParserSettings, config: DetectorConfig, *, bucket: str | None = None,
                    lines: int | None = None, top_k: int = DEFAULT_TOP_K, seed: int = 0, device: str = "auto",
                    progress: bool = False) -> TrainedLog:
    """Parse, mine, count and fit (module docstring)."""
    from tsad.detector import WindowDetector

    if bucket is None and lines is None:
        bucket = DEFAULT_BUCKET
    config.validate()
    report = ParseReport()
    records = read_records(path, settings, report)
    miner = TemplateMiner(config_for(settings.miner_format))
    miner.add_all(r.content for r in records)
    vocab, counts = build_vocabulary(records, miner, top_k, bucket=bucket, lines=lines)
    n = len(counts.frame)
    if n == 0:
        why = "no line has a timestamp; count per --lines instead" if bucket else "no full row"
        raise UserError(f"{path}: no row to train on ({why})")
    if n <= config.window:
        raise UserError(f"{path} gives {n} row(s) of {vocab.span}; training needs more than the window "
                        f"({config.window}): give more log, a shorter --bucket or fewer --lines")
    det = WindowDetector(config, seed=seed, device=device, progress=progress)
    det.fit(features(counts.values), channel_names=vocab.columns)
    return TrainedLog(LogModel(settings, miner, vocab, det), report, n, len(miner))


# ------------------------------------------------------------------------------------- scoring
def explain(model: LogModel, row: pd.Series | dict[str, float]) -> list[str]:
    """The contributors of an alerted row as tsad.logfeatures.explain_row writes them, ranked by the
    count's excess over its usual: the detector's per-column shares also reflect the rows before
    (its context), the excess is what the row itself holds."""
    return explain_row(row, model.vocab, TOP_EXPLAINED)


class RowScorer:
    """Causal scores and alerts of count rows as they come (detect and monitor share it). An alerted
    row enters the context of the rows after it as its *usual* counts (the training means): one
    burst then alerts on its own rows, instead of also on the window − 1 rows that follow it (whose
    context it would otherwise be). A lasting change keeps alerting, row after row."""

    def __init__(self, model: LogModel) -> None:
        self.det = model.detector
        self.usual = features(np.asarray(model.vocab.usual, dtype=float))[None, :]
        self.context = np.empty((0, len(model.vocab.columns)))
        self.alerting = self.det.alerting_.fresh_state()

    def score(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, score_prob, is_anomaly) of consecutive rows of counts, after the rows before."""
        import copy

        from tsad.batch import score_after

        x = features(counts)
        n = len(x)
        score, prob, flags = np.full(n, np.nan), np.zeros(n), np.zeros(n, dtype=bool)
        i = 0
        while i < n:
            part = x[i:i + RESCORE_ROWS]
            result, context, alerting = score_after(self.det, self.context, part, copy.deepcopy(self.alerting))
            hit = np.flatnonzero(result.is_anomaly)
            k = int(hit[0]) if len(hit) else len(part) - 1
            score[i:i + k + 1], prob[i:i + k + 1] = result.score[:k + 1], result.score_prob[:k + 1]
            flags[i:i + k + 1] = result.is_anomaly[:k + 1]
            if not len(hit):
                self.context, self.alerting = context, alerting
            else:  # the state after row k exactly, with row k replaced by its usual counts in the context
                _, _, self.alerting = score_after(self.det, self.context, part[:k + 1], self.alerting)
                data = np.vstack([self.context, part[:k], self.usual])
                self.context = data[max(0, len(data) - self.det.context_rows):]
            i += k + 1
        return score, np.where(np.isfinite(score), prob, np.nan), flags


@dataclass
class LogDetection:
    frame: pd.DataFrame  # time, first_line, last_line, lines, score, score_prob, is_anomaly, new_templates, templates
    report: ParseReport
    new_events: list[tuple[int, str]]  # (line, content) of lines matching no training template, the first few
    new_count: int = 0
    dropped: int = 0  # untimed lines before any timed one (bucket mode)


def detect_log(model: LogModel, path: Path) -> LogDetection:
    """Score a whole log file, one row per bucket / window of lines (module docstring)."""
    report = ParseReport()
    records = read_records(path, model.settings, report)
    counter = LogCounter(model.vocab)
    rows: list[CountRow] = []
    for record in records:
        rows.extend(counter.add(record, model.match(record)))
    rows.extend(counter.flush())
    if not rows:
        raise UserError(f"{path}: no row to score (no line has a timestamp; the model counts per {model.vocab.span})")
    counts = rows_frame(rows, model.vocab)
    score, prob, flags = RowScorer(model).score(counts.values)
    frame = counts.frame[["time", "first_line", "last_line"]].copy()
    frame["lines"] = counts.frame["total"].astype(int)
    frame["score"], frame["score_prob"], frame["is_anomaly"] = score, prob, flags
    frame["new_templates"] = [r.new_count for r in rows]
    frame["templates"] = ["; ".join(explain(model, counts.frame.iloc[k])) if flags[k] else "" for k in range(len(rows))]
    return LogDetection(frame, report, counts.events, counts.new_count, counter.dropped)


def row_alert(model: LogModel, row: CountRow, score: float, prob: float) -> dict[str, Any]:
    """The JSON alert of one anomalous row (what `ae tsad monitor --format log` writes)."""
    values = dict(zip(model.vocab.columns, row.values.tolist()))
    return {"event": "alert", "time": None if row.time is None else pd.Timestamp(row.time).isoformat(),
            "first_line": row.first_line, "last_line": row.last_line, "lines": int(values["total"]),
            "score": score, "score_prob": prob, "threshold": model.detector.alerting_.describe(),
            "templates": explain(model, values), "new_templates": row.new_count,
            "new_template_lines": [{"line": n, "content": c} for n, c in row.new_templates[:5]]}


# ------------------------------------------------------------------------------------- monitor
@dataclass
class LogMonitorStats:
    report: ParseReport = field(default_factory=ParseReport)
    rows: int = 0
    alerts: int = 0
    new_templates: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"monitor: {failure_text(self.report, 'log')}; {self.rows} row(s) scored, {self.alerts} alert(s), "
                f"{self.new_templates} line(s) matching no training template in {self.seconds:.1f} s")


class LogMonitor:
    """Log lines in (a pipe or a followed file), rows scored as they close, one JSON line per
    anomalous row out. A bucket closes when the first line of a later bucket arrives (a window of
    lines when its last line does); at the end of the input the open row is scored too. No resume
    state: a restarted log monitor starts with fresh rows and context."""

    def __init__(self, model_dir: str | Path, input_path: str | None = "-", alerts: str | None = "-",
                 scores: str | None = None, follow: bool = False, idle_timeout: float | None = None,
                 device: str = "cpu", fsync: bool = False, poll_seconds: float = 0.2) -> None:
        from tsad.monitor import JsonLinesOutput

        self.model = LogModel.load(model_dir, device=device)
        self.input_path, self.follow = input_path, follow
        self.idle_timeout, self.poll_seconds = idle_timeout, poll_seconds
        self.stats = LogMonitorStats()
        self.parser = LineParser(self.model.settings.line_parser(), self.stats.report)
        self.counter = LogCounter(self.model.vocab)
        self.scorer = RowScorer(self.model)
        self.alerts = JsonLinesOutput(alerts, None, fsync)
        self.scores = JsonLinesOutput(scores, None, fsync) if scores else None
        self._stop = False

    def _lines(self) -> Iterator[str | None]:
        from tsad.stream import follow_lines, pipe_lines

        if self.input_path in (None, "-"):
            for line, _, _ in pipe_lines(sys.stdin, stop=lambda: self._stop, poll_seconds=min(self.poll_seconds, 0.1)):
                yield line
            return
        for line, _, _ in follow_lines(self.input_path, 0, None, follow=self.follow, poll_seconds=self.poll_seconds,
                                       idle_timeout=self.idle_timeout, stop=lambda: self._stop, yield_idle=True):
            yield line

    def run(self) -> LogMonitorStats:
        t0 = time.perf_counter()
        from tsad.monitor import install_handlers, restore_handlers

        def handler(signum: int, frame: Any) -> None:
            self._stop = True

        previous = install_handlers([signal.SIGINT, signal.SIGTERM], handler)
        line_no = 0
        try:
            for line in self._lines():
                if line is not None:
                    line_no += 1
                    record = self.parser.feed(line_no, line)
                    if record is not None:
                        tid = self.model.match(record)
                        if tid == OTHER_ID:
                            self.stats.new_templates += 1
                        self._score(self.counter.add(record, tid))
                if self._stop:
                    break
            if not self._stop:
                self._score(self.counter.flush())
        finally:
            restore_handlers(previous)
            self.alerts.close()
            if self.scores:
                self.scores.close()
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    def _score(self, rows: list[CountRow]) -> None:
        if not rows:
            return
        scores, probs, flags = self.scorer.score(np.vstack([r.values for r in rows]))
        for j, row in enumerate(rows):
            score = float(scores[j]) if np.isfinite(scores[j]) else None
            prob = float(probs[j]) if score is not None else None
            flag = bool(flags[j])
            if self.scores is not None:
                self.scores.write({"event": "score", "time": None if row.time is None else
                                   pd.Timestamp(row.time).isoformat(), "first_line": row.first_line,
                                   "last_line": row.last_line, "score": score, "score_prob": prob,
                                   "is_anomaly": flag, "new_templates": row.new_count})
            if flag:
                self.alerts.write(row_alert(self.model, row, score or 0.0, prob or 0.0))
                self.alerts.flush()
                self.stats.alerts += 1
        self.stats.rows += len(rows)
        if self.scores is not None:
            self.scores.flush()


__all__ = ["LOG_DETECTOR", "LogModel", "LogMonitor", "ParserSettings", "detect_log", "is_log_model",
           "log_detector_config", "train_log_model"]
