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
a new-template event (counted under `other`). `LogMonitor` with a state file resumes exactly
(its docstring: what the state holds, and which lines of a replayed input are skipped).

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
# the detector settings for count rows (tsad.logbench's "dense-w4-c16-e40": as good as its conv twin on count rows
# and ~30x faster to train on a CPU); CLI options override them
LOG_DETECTOR: dict[str, Any] = {
    "window": 4, "network.kind": "dense", "network.hidden": (64, 16), "network.dropout": 0.1,
    "training.epochs": 40, "training.batch_size": 16, "training.val_fraction": 0.0,
    "training.patience": None, "scoring.causal_tail": 1,
    # counts are judged by their level (a burst is a level), with the fixed threshold it was measured with
    "network.center": False, "alerting.mode": "threshold"}


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
STATE_FORMAT = "tsad-log-monitor-state"
STATE_VERSION = 1


def log_model_hash(path: str | os.PathLike[str]) -> str:
    """What a monitor state is tied to: the front end's manifest (it holds the parser settings and
    the checksums of the templates and the vocabulary) and the detector's core.artifact.directory_hash."""
    from core.artifact import directory_hash

    path = Path(path)
    h = hashlib.sha256(_read(path / MANIFEST))
    h.update(directory_hash(path / DETECTOR).encode())
    return h.hexdigest()


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.rstrip("\r\n").encode("utf-8", errors="replace")).hexdigest()


def _year_machine(parse: Any) -> Any:
    """The syslog year state machine (tsad.logparse.SyslogYear) a line parser carries, or None for a
    format without one (found in the parser's closure by its type)."""
    from tsad.logparse import SyslogYear

    for cell in getattr(parse, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, SyslogYear):
            return value
    return None


def _state_json(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to a monitor state")


@dataclass
class LogMonitorStats:
    report: ParseReport = field(default_factory=ParseReport)
    rows: int = 0
    alerts: int = 0
    new_templates: int = 0
    skipped: int = 0  # lines of a replayed stream that the state already covered
    seconds: float = 0.0

    def status(self, started: float, session_lines: int) -> dict[str, Any]:
        """What an operator checks (`--metrics`): alive, keeping up, how much failed to parse."""
        elapsed = max(time.perf_counter() - started, 1e-9)
        r = self.report
        return {"lines": r.lines, "parsed": r.parsed, "unparsed": r.failed, "rows": self.rows, "alerts": self.alerts,
                "new_template_lines": self.new_templates, "skipped": self.skipped,
                "lines_per_second": round(session_lines / elapsed, 1), "uptime_s": round(elapsed, 1),
                "updated": pd.Timestamp.now(tz="UTC").isoformat()}

    def summary(self) -> str:
        skipped = (f", {self.skipped} replayed line(s) already processed skipped" if self.skipped else "")
        return (f"monitor: {failure_text(self.report, 'log')}; {self.rows} row(s) scored, {self.alerts} alert(s), "
                f"{self.new_templates} line(s) matching no training template{skipped} in {self.seconds:.1f} s")


class LogMonitor:
    """Log lines in (a pipe or a followed file), rows scored as they close, one JSON line per
    anomalous row out. A bucket closes when the first line of a later bucket arrives (a window of
    lines when its last line does); at the end of the input the open row is scored too.

    Resume (`state_path`): the state is one plain JSON file (`STATE_FORMAT`, `STATE_VERSION`, the
    model's `log_model_hash`; never pickle) written atomically every `checkpoint_every` lines, on
    SIGINT/SIGTERM and at the end of the input. It holds everything carried from line to line: the
    open bucket or line window (its counts, bounds, first/last line and new-template lines), the
    counter's bookkeeping, the scorer's context rows and alerting state, the syslog year machine,
    the input position, the parse report and counts, and the byte sizes of the alert and score
    files. A state written for another model is refused (one line). On resume the alert and score
    files are cut back to the checkpoint's sizes (what a killed run wrote after its last checkpoint
    is written again once, not twice), so with files the alerts of a run resumed any number of times
    equal those of one run over the whole stream.

    At the end of the input the open row is scored *after* the final checkpoint: the state keeps it
    open, so a later run continues it (its lines may still come). An alert written for that row is
    therefore provisional: a resumed run cuts it from the alerts file and scores the row again when
    it closes (alerts to stdout cannot be cut: that row may be alerted again there).

    Which lines a resumed run skips (the replay rule; line counts, not timestamps, because many log
    lines share one second):
    - a file that is the same one (same inode, not shorter than the saved offset) is read on from
      the saved byte offset: nothing is read twice;
    - otherwise (a pipe, another file, a rotated or truncated one) the input is read from its start.
      If its first line is the first line of the stream the state has counted, the input is that
      stream replayed: the lines the state covers are skipped (counted in the summary) and the rest
      scored. Any other first line starts the continuation: every line is new, and line numbers go
      on from the state's.
    """

    def __init__(self, model_dir: str | Path, input_path: str | None = "-", alerts: str | None = "-",
                 scores: str | None = None, follow: bool = False, idle_timeout: float | None = None,
                 device: str = "cpu", fsync: bool = False, poll_seconds: float = 0.2,
                 state_path: str | Path | None = None, checkpoint_every: int = 1000,
                 metrics: str | Path | None = None, metrics_every: float = 10.0) -> None:
        from tsad.monitor import JsonLinesOutput

        if checkpoint_every < 1:
            raise UserError("--checkpoint-every must be at least 1")
        if metrics_every <= 0:
            raise UserError("--metrics-every must be positive")
        self.metrics_path = Path(metrics) if metrics else None
        self.metrics_every = metrics_every
        self.model = LogModel.load(model_dir, device=device)
        self.input_path, self.follow = input_path, follow
        self.idle_timeout, self.poll_seconds = idle_timeout, poll_seconds
        self.state_path = Path(state_path) if state_path is not None else None
        self.checkpoint_every = checkpoint_every
        self.stats = LogMonitorStats()
        self.parser = LineParser(self.model.settings.line_parser(), self.stats.report)
        self.years = _year_machine(self.parser.parse)
        self.counter = LogCounter(self.model.vocab)
        self.scorer = RowScorer(self.model)
        # the input position: lines counted, the byte offset and inode of a file, the stream's first line
        self.line_no, self.offset, self.inode = 0, 0, None
        self.first_hash: str | None = None
        self.stream_start = 0  # lines counted before the current stream's first line
        self.model_hash = log_model_hash(model_dir) if self.state_path is not None else None
        resume: dict[str, Any] | None = None
        if self.state_path is not None and self.state_path.exists():
            resume = self._load_state(self.state_path)
            self._restore(resume)
        outputs = resume["outputs"] if resume else {}
        self.alerts = JsonLinesOutput(alerts, outputs.get("alerts_bytes") if resume else None, fsync)
        self.scores = (JsonLinesOutput(scores, outputs.get("scores_bytes") if resume else None, fsync)
                       if scores else None)
        self._stop = False
        self._positioned = False  # this run reads a file on from the state's byte offset

    # ------------------------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """The resume state as plain JSON (class docstring)."""
        c, row = self.counter, self.counter._open
        open_row = None if row is None else {
            "time": None if row.time is None else int(row.time.value), "first_line": row.first_line,
            "last_line": row.last_line, "values": row.values.tolist(), "alert": bool(row.alert),
            "new_count": row.new_count, "new_templates": [[n, t] for n, t in row.new_templates]}
        r = self.stats.report
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION, "model_hash": self.model_hash,
            "input": {"path": self.input_path, "lines": self.line_no, "offset": self.offset, "inode": self.inode,
                      "first_line_sha256": self.first_hash, "stream_start": self.stream_start},
            "parser": None if self.years is None else {"year": self.years.year, "month": self.years.month},
            "counter": {"open": open_row, "n": c._n, "dropped": c.dropped, "rows_emitted": c.rows_emitted},
            "scorer": {"context": self.scorer.context.tolist(), "alerting": self.scorer.alerting},
            "stats": {"lines": r.lines, "parsed": r.parsed, "blank": r.blank, "failed": r.failed,
                      "failures": [[n, why] for n, why in r.failures], "rows": self.stats.rows,
                      "alerts": self.stats.alerts, "new_templates": self.stats.new_templates},
            "outputs": {"alerts_bytes": self.alerts.size(),
                        "scores_bytes": self.scores.size() if self.scores else None},
        }

    def checkpoint(self) -> None:
        if self.state_path is None:
            return
        from core.jobs.atomic import atomic_write_text

        atomic_write_text(self.state_path, json.dumps(self.state(), default=_state_json) + "\n")

    def _load_state(self, path: Path) -> dict[str, Any]:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UserError(f"state file {path} cannot be read: {exc.strerror or exc}") from None
        state = parse_json(raw, f"state file {path} is corrupt:")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UserError(f"state file {path} is not a log monitor state ({STATE_FORMAT}); remove it to start over")
        if state.get("version") != STATE_VERSION:
            raise UserError(f"state file {path} has version {state.get('version')!r}, expected {STATE_VERSION}")
        if state.get("model_hash") != self.model_hash:
            raise UserError(f"state file {path} belongs to another model; remove it to start over")
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        width = len(self.model.vocab.columns)
        try:
            inp, counter, scorer, stats = state["input"], state["counter"], state["scorer"], state["stats"]
            self.line_no, self.offset = _int(inp["lines"]), _int(inp["offset"])
            self.inode = None if inp["inode"] is None else _int(inp["inode"])
            self.first_hash = inp["first_line_sha256"]
            if self.first_hash is not None and not isinstance(self.first_hash, str):
                raise ValueError("first_line_sha256 must be a string")
            self.stream_start = _int(inp["stream_start"])
            if (state["parser"] is None) != (self.years is None):
                raise ValueError("the parser state does not fit the model's log format")
            if self.years is not None:
                self.years.year = _int(state["parser"]["year"])
                month = state["parser"]["month"]
                self.years.month = None if month is None else _int(month)
            c = self.counter
            row = counter["open"]
            if row is not None:
                values = np.asarray(row["values"], dtype=float)
                if values.shape != (width,):
                    raise ValueError(f"the open row has {values.size} counts, the model {width} columns")
                when = None if row["time"] is None else pd.Timestamp(_int(row["time"]))
                c._open = CountRow(when, _opt_int(row["first_line"]), _opt_int(row["last_line"]), values,
                                   bool(row["alert"]), _int(row["new_count"]),
                                   [(_int(n), str(t)) for n, t in row["new_templates"]])
            c._n, c.dropped = _int(counter["n"]), _int(counter["dropped"])
            c.rows_emitted = _int(counter["rows_emitted"])
            context = np.asarray(scorer["context"], dtype=float).reshape(-1, width)
            if len(context) > self.scorer.det.context_rows or not np.isfinite(context).all():
                raise ValueError("the scorer context does not fit the model")
            if not isinstance(scorer["alerting"], dict):
                raise ValueError("the alerting state must be an object")
            self.scorer.context, self.scorer.alerting = context, scorer["alerting"]
            r = self.stats.report
            r.lines, r.parsed, r.blank, r.failed = (_int(stats[k]) for k in ("lines", "parsed", "blank", "failed"))
            r.failures = [(_int(n), str(why)) for n, why in stats["failures"]]
            self.stats.rows, self.stats.alerts = _int(stats["rows"]), _int(stats["alerts"])
            self.stats.new_templates = _int(stats["new_templates"])
            outputs = state["outputs"]
            for key in ("alerts_bytes", "scores_bytes"):
                if outputs[key] is not None:
                    _int(outputs[key])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"state file {self.state_path} is corrupt: {exc}") from None

    # ------------------------------------------------------------------------------------ loop
    def _lines(self) -> Iterator[tuple[str | None, int, int | None]]:
        from tsad.stream import follow_lines, pipe_lines

        self._positioned = False
        if self.input_path in (None, "-"):
            for line, _, _ in pipe_lines(sys.stdin, stop=lambda: self._stop, poll_seconds=min(self.poll_seconds, 0.1)):
                yield line, 0, None
            return
        offset, inode = 0, None
        try:
            st = os.stat(self.input_path)
            if self.inode is not None and st.st_ino == self.inode and st.st_size >= self.offset:
                offset, inode = self.offset, self.inode  # the same file: read on where the state stopped
                self._positioned = offset > 0
        except OSError:
            pass  # follow_lines reports a missing file (or waits for it with --follow)
        yield from follow_lines(self.input_path, offset, inode, follow=self.follow, poll_seconds=self.poll_seconds,
                                idle_timeout=self.idle_timeout, stop=lambda: self._stop, yield_idle=True)

    def _begin_stream(self, line: str) -> int:
        """The first line of an input read from its start: the number of lines to skip (class
        docstring: a replay of the stream the state counted, from its first line), else 0."""
        digest = _line_hash(line)
        if digest == self.first_hash and self.line_no > self.stream_start:
            return self.line_no - self.stream_start
        self.first_hash, self.stream_start = digest, self.line_no
        return 0

    def run(self) -> LogMonitorStats:
        t0 = time.perf_counter()
        from tsad.monitor import install_handlers, restore_handlers

        def handler(signum: int, frame: Any) -> None:
            self._stop = True

        previous = install_handlers([signal.SIGINT, signal.SIGTERM], handler)
        next_metrics, session_lines = t0, 0
        skip = 0  # lines of a replayed stream still to skip
        last_offset: int | None = None
        last_inode: int | None = None
        since = 0  # lines since the last checkpoint
        try:
            for line, offset, inode in self._lines():
                if line is not None:
                    if last_offset is None:
                        started = not self._positioned  # the first line this run reads
                    else:  # a followed file rotated or truncated: read again from its start
                        started = inode != last_inode or offset < last_offset
                    last_offset, last_inode = offset, inode
                    if started:
                        skip = self._begin_stream(line)
                    if skip:
                        skip -= 1
                        self.stats.skipped += 1
                    else:
                        self.line_no += 1
                        record = self.parser.feed(self.line_no, line)
                        if record is not None:
                            tid = self.model.match(record)
                            if tid == OTHER_ID:
                                self.stats.new_templates += 1
                            self._score(self.counter.add(record, tid))
                        since += 1
                    self.offset, self.inode = offset, inode
                    if since >= self.checkpoint_every:
                        self.checkpoint()
                        since = 0
                    session_lines += 1
                if self.metrics_path is not None and time.perf_counter() >= next_metrics:
                    self._write_metrics(t0, session_lines)
                    next_metrics = time.perf_counter() + self.metrics_every
                if self._stop:
                    break
            self.checkpoint()
            if not self._stop:  # end of input: score the open row (provisionally with a state: docstring)
                self._score(self.counter.flush())
            if self.metrics_path is not None:
                self._write_metrics(t0, session_lines)
        finally:
            restore_handlers(previous)
            self.alerts.close()
            if self.scores:
                self.scores.close()
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    def _write_metrics(self, started: float, session_lines: int) -> None:
        from core.jobs.atomic import atomic_write_text

        atomic_write_text(self.metrics_path, json.dumps(self.stats.status(started, session_lines), indent=1) + "\n")

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


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


__all__ = ["LOG_DETECTOR", "LogModel", "LogMonitor", "ParserSettings", "detect_log", "is_log_model",
           "log_detector_config", "train_log_model"]
