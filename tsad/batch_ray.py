"""`ae tsad score --engine ray`: the same causal scores as the local engine, one unit of work per series.

Units. Without `--series-col` or `--state` every file is its own series (the local engine starts a
fresh scorer per file): a unit is a file, which its worker reads, screens and scores itself, so
reading scales with the workers too. With `--series-col` (or `--state`, whose series run on across
files) a series' rows may be spread over a file and over files: the driver reads the files once,
splits the raw rows by series, and a unit is one series' rows, file by file in the order given,
scored from the state's saved history when there is one. Either way a worker runs the local
engine's own pieces (tsad.batch: the causal ingest, `CausalScorer`, `scores_frame`), so its rows and
scores are the local ones; only the row order differs (shard by shard, one unit per shard).

The output is a folder of Parquet shards (core.engines.ray_engine); the manifest has the local
engine's input entries, counts and rejected rows, plus the shards. `--state` is written after the
folder is committed, as locally.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.artifact import directory_hash
from core.engines.ray_engine import UnitResult, ray_session, require_ray, run_sharded
from core.errors import UserError
from core.jobs.hashing import file_digest
from core.jobs.manifest import RunManifest
from tsad.batch import (
    CausalScorer,
    ScoreOptions,
    ScoreState,
    accepted_series,
    explain_entry,
    model_layout,
    record_rejected,
    score_file,
    scores_frame,
)
from tsad.detector import WindowDetector
from tsad.ingest import SEEN, Accepted, Rows, read_rows

log = logging.getLogger(__name__)

COUNTS = ("rows", "rejected", "already_scored", "scored", "unscored")


def new_entry(path: Path, digest: str) -> dict[str, Any]:
    return {"path": str(path), "sha256": digest, **{c: 0 for c in COUNTS}}


class SeriesWorker:
    """A Ray worker's side of `score --engine ray`: the detector loaded once (its directory must hash
    as the driver's did), then `run(unit)` for a file unit or a series unit."""

    def __init__(self, model_dir: str, model_hash: str, options: dict[str, Any], device: str = "cpu") -> None:
        found = directory_hash(Path(model_dir))
        if found != model_hash:
            raise UserError(f"model {model_dir} on this worker has hash {found[:12]}, the driver's has "
                            f"{model_hash[:12]}: the nodes must see the same model directory")
        self.det = WindowDetector.load(Path(model_dir), device=device)
        self.opts = ScoreOptions(**options)

    def run(self, unit: dict[str, Any]) -> UnitResult:
        return self._file(Path(unit["path"])) if unit["kind"] == "file" else self._series(unit)

    def _file(self, path: Path) -> UnitResult:
        """A whole file, exactly as the local engine scores it without a state."""
        entry = new_entry(path, file_digest(path))
        scratch = RunManifest(job="tsad score", model_path="", model_hash="")
        scorers: dict[Any, CausalScorer] = {}
        frames: list[pd.DataFrame] = []
        try:
            for frame in score_file(self.det, path, self.opts, scratch, entry, scorers, None, {}):
                frames.append(frame)
        except UserError as exc:
            scratch.reject(str(path), str(exc))
            entry["rejected"] = "file"
        histories = [s.history for s in scorers.values()]
        return UnitResult(pd.concat(frames, ignore_index=True) if frames else None,
                          {"entries": {str(path): {**entry, "histories": histories}}, "rejected": scratch.rejected})

    def _series(self, unit: dict[str, Any]) -> UnitResult:
        """One series' raw rows, file by file: pushed in the chunks the driver read, flushed at the end
        of each file, as the local engine does; returns its state when the run keeps one."""
        det, opts = self.det, self.opts
        scorer = CausalScorer(det, opts.series_col, opts.duplicates, unit["parts"][0][0])
        if unit.get("state") is not None:
            scorer.restore(unit["state"])
        frames: list[pd.DataFrame] = []
        entries: dict[str, dict[str, Any]] = {}
        rejected: list[dict[str, Any]] = []

        def keep(path: str, accepted: Accepted, scores: Any, entry: dict[str, Any]) -> None:
            if scores is None:
                return
            entry["scored"] += int(np.isfinite(scores.score).sum())
            entry["unscored"] += int((~np.isfinite(scores.score)).sum())
            frame = scores_frame(accepted_series(det, accepted, path), scores, contributions=False)
            frame.insert(0, "source", path)
            if opts.series_col:
                frame.insert(1, "series", unit["key"])
            frames.append(frame)

        for path, chunks in unit["parts"]:
            entry = entries.setdefault(path, {c: 0 for c in COUNTS if c != "rows"})
            scorer.ingest.screen.source = path
            for rows in chunks:
                accepted, scores, bad = scorer.push(rows)
                for r in bad:
                    if r.kind == SEEN:
                        entry["already_scored"] += 1
                    else:
                        entry["rejected"] += 1
                        rejected.append({"input": path, "row": r.line_no, "reason": r.reason})
                keep(path, accepted, scores, entry)
            accepted, scores = scorer.flush()
            keep(path, accepted, scores, entry)
            # as the local engine counts them: the scorer's fills so far (a kept series runs across files)
            entry["gaps"] = {"missing": scorer.ingest.counts.missing, "filled_start": scorer.ingest.counts.filled_start}
            entry["histories"] = [scorer.history]
        meta = {"entries": entries, "rejected": rejected,
                "state": scorer.state() if unit.get("stateful") else None}
        return UnitResult(pd.concat(frames, ignore_index=True) if frames else None, meta)


def score_inputs_ray(model_dir: Path, det: WindowDetector, files: list[Path], out: Path, opts: ScoreOptions,
                     manifest: RunManifest, state: ScoreState | None, device: str, progress: bool,
                     address: str | None, workers: int | None) -> None:
    """Score `files` on Ray workers into the shard folder `out`, filling `manifest` as the local
    engine does (entries by file, in order; rejected rows; counts) plus the shards; then the state."""
    require_ray()
    entries = {str(p): new_entry(p, "") for p in files}
    if opts.series_col is None and state is None:
        units: list[dict[str, Any]] = [{"kind": "file", "path": str(p)} for p in files]
        keys: list[Any] = [None] * len(units)
    else:
        units, keys = _split_series(det, files, opts, manifest, entries, state)
    worker = {"model_dir": str(Path(model_dir).resolve()), "model_hash": manifest.model_hash,
              "options": {"series_col": opts.series_col, "chunk_rows": opts.chunk_rows,
                          "duplicates": opts.duplicates, "state": None, "series": opts.series},
              "device": "cpu" if device == "auto" else device}
    with ray_session(address, workers) as n:
        shards = run_sharded(out, units, SeriesWorker, worker, n, progress, "scoring series")
    manifest.engine = {"name": "ray", "workers": n, "address": address}
    manifest.shards = [{"file": s.file, "rows": s.rows, **({"series": str(keys[s.unit])} if keys[s.unit] is not None
                                                          else {"input": units[s.unit]["path"]}), "worker": s.worker}
                       for s in shards if s.file]
    histories: dict[str, list[int]] = {p: [] for p in entries}
    rejected: dict[str, list[dict[str, Any]]] = {p: [] for p in entries}
    states: dict[str, dict[str, Any]] = {}
    for shard, key in zip(shards, keys):
        for path, got in shard.meta["entries"].items():
            histories[path] += got.pop("histories", [])
            _add_counts(entries[path], got)
        for r in shard.meta["rejected"]:
            rejected[r["input"]].append(r)
        if shard.meta.get("state") is not None:
            states[str(key)] = shard.meta["state"]
    own = [r for r in manifest.rejected]  # rejected while the driver read (series units)
    manifest.rejected = []
    for path, entry in entries.items():
        rows = sorted([r for r in own if r["input"] == path] + rejected[path],
                      key=lambda r: (r["row"] is not None, r["row"] or 0))
        manifest.rejected += rows
        manifest.inputs.append(entry)
        warning = explain_entry(det, entry, histories[path], state is not None)
        if warning:
            log.warning("%s", warning)
    manifest.rows_out = sum(s.rows for s in shards)
    if state is not None:  # only now: the output is committed
        state.save_states(states, str(model_dir))


def _add_counts(entry: dict[str, Any], got: dict[str, Any]) -> None:
    for name, value in got.items():
        if name in ("path", "sha256"):
            entry[name] = value
        elif name == "rejected" and (value == "file" or entry.get("rejected") == "file"):
            entry["rejected"] = "file"
        elif name == "gaps":
            gaps = entry.setdefault("gaps", {"missing": 0, "filled_start": 0})
            for k, v in value.items():
                gaps[k] += v
        elif name == "note":
            continue
        else:
            entry[name] = entry.get(name, 0) + value


def _split_series(det: WindowDetector, files: list[Path], opts: ScoreOptions, manifest: RunManifest,
                  entries: dict[str, dict[str, Any]], state: ScoreState | None) -> tuple[list[dict], list[Any]]:
    """Read every file once on the driver and group its raw rows into one unit per series: per
    (file, series) without a state (each file starts afresh, as locally), per series name with one."""
    parts: dict[Any, dict[str, list[Rows]]] = {}
    shown: dict[Any, Any] = {}
    for path in files:
        entry = entries[str(path)]
        entry["sha256"] = file_digest(path)
        try:
            for rows, bad in read_rows(path, model_layout(det, opts.series_col), opts.chunk_rows):
                entry["rows"] += len(rows) + len(bad)
                record_rejected(manifest, path, entry, bad)
                codes, keys = pd.factorize(rows.keys if opts.series_col else np.zeros(len(rows)),
                                           use_na_sentinel=False)
                for code, key in enumerate(keys):
                    name = str(key) if opts.series_col else opts.series
                    unit_key = name if state is not None else (str(path), name)
                    shown.setdefault(unit_key, key)
                    parts.setdefault(unit_key, {}).setdefault(str(path), []).append(
                        rows.take(np.flatnonzero(codes == code)))
        except UserError as exc:
            manifest.reject(str(path), str(exc))
            entry["rejected"] = "file"
            log.warning("rejected %s: %s", path, exc)
    units, keys = [], []
    for unit_key, by_path in parts.items():
        name = unit_key if state is not None else unit_key[1]
        units.append({"kind": "series", "key": shown[unit_key], "parts": list(by_path.items()),
                      "state": state.saved.get(name) if state is not None else None,
                      "stateful": state is not None})
        keys.append(name)
    return units, keys
