"""`ae tsad score` for log models: scheduled batch scoring of log files, with a run manifest.

Each input file is its own stream: its lines are parsed with the model's saved parser settings,
counted per bucket / window of lines and scored exactly as `ae tsad detect --format log` does
(tsad.logmodel.detect_log: the same rows, scores, alerts and alert text), so `detect` on a file
and `score` over it give the same scores. All files go into one Parquet/CSV (written atomically,
core.jobs.tables.TableWriter) with a `source` column before the columns `detect` writes.

The run manifest (core.jobs.manifest.RunManifest, next to the output) records the model's content
hash, each input's sha256 and counts (`lines` read, `parsed`, `rejected`: lines that do not match
the log format, `rows` written, `scored`, `unscored`: the first window − 1 rows of a file, which
have no history, `alerts`, `new_templates`, `dropped`: untimed lines before the first timed one),
and every rejected line with its line number and reason (the first
tsad.logparse.MAX_KEPT_FAILURES of a file; the counts are complete). A file with no parseable
line, or no row to score, is rejected whole. Exit 3 when any line or file was rejected.

Not for logs (yet): `--state` (a log file's rows start from fresh context each run), `--series-col`
and `--engine ray`; each is refused in one line.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from core.artifact import directory_hash
from core.errors import UserError
from core.jobs.hashing import file_digest
from core.jobs.manifest import (
    RunManifest,
    finish_and_write,
    is_up_to_date,
    manifest_path_for,
    record_failure,
)
from core.jobs.progress import track
from core.jobs.tables import TableWriter, check_outputs_apart, expand_inputs, require_file
from tsad.logmodel import DETECTOR, MANIFEST, TEMPLATES, VOCABULARY, LogModel, detect_log

log = logging.getLogger(__name__)

JOB = "tsad score"
LOG_SCORE_VERSION = 1  # bump when the rows or scores of a log score run change (compared by --skip-existing)


def log_params() -> dict[str, Any]:
    """What `--skip-existing` compares besides the model and the inputs."""
    return {"input": "log", "mode": "causal", "log_score": LOG_SCORE_VERSION}


def log_model_hash(model_dir: Path) -> str:
    """The content hash of a log model: its front end's files and its detector's config and weights."""
    h = hashlib.sha256()
    for name in (MANIFEST, TEMPLATES, VOCABULARY):
        h.update(file_digest(model_dir / name).encode())
    h.update(directory_hash(model_dir / DETECTOR).encode())
    return h.hexdigest()


def expand_log_inputs(specs: str | list[str]) -> list[Path]:
    """Files, folders (every regular, non-hidden file in them) or globs → the log files, in order.
    Files and globs go through core.jobs.tables.expand_inputs as for tables; a folder is listed here,
    since expand_inputs takes only CSV/Parquet files from a folder."""
    found: list[Path] = []
    for spec in specs if isinstance(specs, list) else [specs]:
        p = Path(spec)
        if p.is_dir():
            found += sorted(require_file(q) for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
        else:
            try:
                found += expand_inputs(str(spec))
            except UserError:
                raise UserError(f"no log files found in {spec}") from None
    if not found:
        raise UserError(f"no log files found in {', '.join(map(str, specs if isinstance(specs, list) else [specs]))}")
    return list(dict.fromkeys(found))


def check_log_options(out: Path, *, state: Path | None = None, series_col: str | None = None,
                      engine: str = "local") -> None:
    """The `score` options that do not apply to a log model: one-line UserErrors (exit 2)."""
    if state is not None:
        raise UserError("--state does not apply to log models: each log file is scored as its own stream")
    if series_col is not None:
        raise UserError("--series-col does not apply to log models: each log file is scored as its own stream")
    if engine != "local":
        raise UserError(f"--engine {engine} does not score log models yet; use --engine local")
    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise UserError("--out must end in .parquet or .csv")


def score_logs(model_dir: Path, inputs: str | list[str], out: Path, device: str = "auto",
               progress: bool = False) -> RunManifest:
    """Score every log file into `out`; the returned manifest (not finished) lists the inputs,
    their counts and the rejected lines and files."""
    model = LogModel.load(model_dir, device=device)
    files = expand_log_inputs(inputs)
    check_outputs_apart([out, manifest_path_for(out)], list(files))
    manifest = RunManifest(job=JOB, model_path=str(model_dir), model_hash=log_model_hash(model_dir),
                           params=log_params(), outputs=[str(out)])
    with TableWriter(out) as writer:
        for path in track(files, "scoring log files", progress):
            entry: dict[str, Any] = {"path": str(path), "sha256": file_digest(path), "lines": 0, "parsed": 0,
                                     "rejected": 0, "rows": 0, "scored": 0, "unscored": 0, "alerts": 0,
                                     "new_templates": 0, "dropped": 0}
            manifest.inputs.append(entry)
            try:
                found = detect_log(model, path)
            except UserError as exc:
                manifest.reject(str(path), str(exc))
                entry["rejected"] = "file"
                log.warning("rejected %s: %s", path, exc)
                continue
            report, frame = found.report, found.frame
            entry.update(lines=report.lines, parsed=report.parsed, rejected=report.failed, rows=len(frame),
                         scored=int(frame["score"].notna().sum()), unscored=int(frame["score"].isna().sum()),
                         alerts=int(frame["is_anomaly"].sum()), new_templates=found.new_count,
                         dropped=found.dropped)
            if report.failed > len(report.failures):
                entry["rejected_listed"] = len(report.failures)
            for line, reason in report.failures:
                manifest.reject(str(path), reason, row=line)
            frame = frame.copy()
            frame.insert(0, "source", str(path))
            writer.write(frame)
    manifest.rows_in = sum(e["lines"] for e in manifest.inputs)
    manifest.rows_out = writer.rows
    return manifest


def score_log_job(model_dir: Path, inputs: str | list[str], out: Path, manifest_path: Path | None = None,
                  skip_existing: bool = False, device: str = "auto",
                  progress: bool = False) -> tuple[RunManifest | None, Path]:
    """`ae tsad score` on a log model as a library call: score, finish and write the manifest (exit
    code 0 ok, 3 partial: some lines or files rejected). Returns (None, manifest path) when
    `skip_existing` finds the same model, inputs and options already produced `out`. A bad argument
    raises UserError and writes nothing; any other failure writes a failed manifest and re-raises."""
    manifest_path = Path(manifest_path) if manifest_path else manifest_path_for(out)
    if skip_existing:
        fingerprints = [{"path": str(p), "sha256": file_digest(p)} for p in expand_log_inputs(inputs)]
        if is_up_to_date(manifest_path, log_model_hash(model_dir), fingerprints, log_params()):
            return None, manifest_path
    try:
        manifest = score_logs(model_dir, inputs, out, device=device, progress=progress)
    except UserError:
        raise
    except Exception as exc:  # a real failure: record it so a scheduler can see why
        record_failure(manifest_path, JOB, str(model_dir), log_params(), exc)
        raise
    finish_and_write(manifest, manifest_path)
    return manifest, manifest_path


def log_score_summary(manifest: RunManifest) -> str:
    """'read 2410 log lines from 2 file(s): 236 rows scored, 6 without a score (need window history), …'."""
    entries = manifest.inputs
    total = {k: sum(e.get(k, 0) for e in entries if isinstance(e.get(k, 0), int))
             for k in ("scored", "unscored", "alerts", "rejected", "new_templates")}
    parts = [f"{total['scored']} rows scored"]
    if total["unscored"]:
        parts.append(f"{total['unscored']} without a score (need window history)")
    parts.append(f"{total['alerts']} anomalous")
    if total["rejected"]:
        parts.append(f"{total['rejected']} line(s) rejected (not matching the log format)")
    if total["new_templates"]:
        parts.append(f"{total['new_templates']} line(s) matching no training template")
    files = sum(1 for e in entries if e.get("rejected") == "file")
    if files:
        parts.append(f"{files} file(s) rejected")
    return f"read {manifest.rows_in} log lines from {len(entries)} file(s): {', '.join(parts)}"


__all__ = ["check_log_options", "expand_log_inputs", "log_score_summary", "score_log_job", "score_logs"]
