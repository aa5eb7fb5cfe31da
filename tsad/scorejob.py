"""`ae tsad score` as a library call: options checked, the engine chosen, the manifest finished.

The local engine scores the files in this process into one .parquet/.csv (tsad.batch holds its
pieces: the causal scorer, the state, the per-file loop); the ray engine hands the same pieces to
Ray workers, one series per unit, and writes a folder of Parquet shards (tsad.batch_ray).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.artifact import directory_hash
from core.engines import check_engine
from core.engines.ray_engine import require_ray
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
from core.jobs.tables import TableWriter, check_outputs_apart, expand_inputs
from tsad.adapt import check_adaptable
from tsad.batch import CausalScorer, ScoreOptions, ScoreState, explain_entry, score_file
from tsad.batch_ray import score_inputs_ray
from tsad.detector import WindowDetector
from tsad.ingest import check_duplicates

log = logging.getLogger(__name__)


@dataclass
class EngineOptions:
    """Where a `score` run's work runs (core.engines): the local engine writes one .parquet/.csv
    file, the ray engine a folder of Parquet shards."""

    name: str = "local"
    address: str | None = None
    workers: int | None = None

    def check(self, out: Path) -> None:
        check_engine(self.name, self.address, self.workers)
        if self.name == "local" and out.suffix.lower() not in (".parquet", ".pq", ".csv"):
            raise UserError("--out must end in .parquet or .csv")
        if self.name == "ray":
            if out.suffix.lower() == ".csv":
                raise UserError("--engine ray writes a folder of Parquet shards: give --out a folder name, not .csv")
            require_ray()

    def params(self) -> dict[str, Any]:
        """What `--skip-existing` compares: a file and a shard folder are different outputs."""
        return {} if self.name == "local" else {"engine": self.name}


def check_adapt(opts: ScoreOptions, engine: EngineOptions) -> None:
    if opts.adapt and engine.name == "ray":
        raise UserError("--adapt runs on the local engine only (each series' weights change as it is scored); "
                        "drop --engine ray or --adapt")


def score_inputs(model_dir: Path, inputs: str | list[str], out: Path, series_col: str | None = None,
                 chunk_rows: int = 100_000, device: str = "auto", progress: bool = False,
                 options: ScoreOptions | None = None, engine: EngineOptions | None = None) -> RunManifest:
    """Score every input file into `out`; the returned manifest lists inputs, counts and rejections.
    `options` (when given) replaces `series_col` and `chunk_rows`. Each input entry counts its rows
    (`rows` read, `rejected`, `already_scored`, `scored`: with a score, `unscored`: kept but short of
    window history) and says why rows were not scored (`note`). `engine` ray: Ray workers score one
    series per unit into OUT as a folder of Parquet shards (tsad.batch_ray), with the same rows."""
    opts = options or ScoreOptions(series_col, chunk_rows)
    engine = engine or EngineOptions()
    check_adapt(opts, engine)
    engine.check(out)
    check_duplicates(opts.duplicates)
    det = WindowDetector.load(model_dir, device=device)
    if opts.adapt:
        check_adaptable(det.config)
    files = expand_inputs(inputs)
    check_outputs_apart([out, manifest_path_for(out), *([opts.state] if opts.state else [])], list(files))
    if opts.chunk_rows < det.window:
        raise UserError(f"--chunk-rows must be at least the window ({det.window})")
    model_hash = directory_hash(model_dir)
    state = ScoreState(opts.state, det, model_hash, opts.duplicates, opts.adapt) if opts.state is not None else None
    manifest = RunManifest(job="tsad score", model_path=str(model_dir), model_hash=model_hash,
                           params={**opts.params(), **engine.params()},
                           outputs=[str(out), *([str(opts.state)] if opts.state else [])])
    if engine.name == "ray":
        score_inputs_ray(model_dir, det, files, out, opts, manifest, state, device, progress, engine.address,
                         engine.workers)
        manifest.rows_in = sum(e["rows"] for e in manifest.inputs)
        return manifest
    kept: dict[str, CausalScorer] = {}  # with a state: every series of the run, saved at the end
    with TableWriter(out) as writer:
        for path in track(files, "scoring files", progress):
            entry: dict[str, Any] = {"path": str(path), "sha256": file_digest(path), "rows": 0, "rejected": 0,
                                     "already_scored": 0, "scored": 0, "unscored": 0}
            manifest.inputs.append(entry)
            scorers: dict[Any, CausalScorer] = {}
            try:
                for frame in score_file(det, path, opts, manifest, entry, scorers, state, kept):
                    writer.write(frame)
            except UserError as exc:
                manifest.reject(str(path), str(exc))
                entry["rejected"] = "file"
                log.warning("rejected %s: %s", path, exc)
            warning = explain_entry(det, entry, [s.history for s in scorers.values()], state is not None)
            if warning:
                log.warning("%s", warning)
    if state is not None:  # only now: the output is committed; a failure above leaves the old state
        state.save(kept, str(model_dir))
    manifest.rows_in = sum(e["rows"] for e in manifest.inputs)
    manifest.rows_out = writer.rows
    return manifest


def score_job(model_dir: Path, inputs: str | list[str], out: Path, series_col: str | None = None,
              chunk_rows: int = 100_000, manifest_path: Path | None = None, skip_existing: bool = False,
              device: str = "auto", progress: bool = False, options: ScoreOptions | None = None,
              engine: EngineOptions | None = None) -> tuple[RunManifest | None, Path]:
    """`ae tsad score` as a library call: score, finish and write the manifest (status and exit code
    0 ok, 3 partial: some inputs or rows rejected). Returns (None, manifest path) when `skip_existing`
    finds the same model, inputs and options already produced `out`. A bad argument or input raises
    UserError and writes nothing; any other failure writes a failed manifest and re-raises (and
    leaves a `--state` as it was)."""
    opts = options or ScoreOptions(series_col, chunk_rows)
    engine = engine or EngineOptions()
    check_adapt(opts, engine)
    engine.check(out)
    manifest_path = Path(manifest_path) if manifest_path else manifest_path_for(out)
    params = {**opts.params(), **engine.params()}
    if skip_existing:
        fingerprints = [{"path": str(p), "sha256": file_digest(p)} for p in expand_inputs(inputs)]
        if is_up_to_date(manifest_path, directory_hash(model_dir), fingerprints, params):
            return None, manifest_path
    try:
        manifest = score_inputs(model_dir, inputs, out, device=device, progress=progress, options=opts,
                                engine=engine)
    except UserError:
        raise
    except Exception as exc:  # a real failure: record it so a scheduler can see why
        record_failure(manifest_path, "tsad score", str(model_dir), params, exc)
        raise
    finish_and_write(manifest, manifest_path)
    return manifest, manifest_path
