"""Run manifests for batch jobs: what a run read, wrote and rejected, and whether a re-run can be skipped.

The manifest records the model path and content hash, input fingerprints, row counts, rejected rows
with reasons, the engine and the shards of a sharded output, duration and exit status, and is
written atomically next to the output.
`is_up_to_date` says whether the same model, inputs and parameters already produced the output.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.jobs.atomic import atomic_write_text
from core.jsontext import parse_json

MANIFEST_SUFFIX = ".manifest.json"
# exit codes of every `ae` command; a batch job records its own in its manifest
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


@dataclass
class RunManifest:
    """What a batch run did, written next to its output as JSON."""

    job: str
    model_path: str
    model_hash: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # where it ran ({"name": "ray", "workers": 2, "address": None}); empty for the local engine
    engine: dict[str, Any] = field(default_factory=dict)
    # the files of a sharded output (a folder): [{"file": "part-00000.parquet", "rows": 20480, ...}]
    shards: list[dict[str, Any]] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    duration_s: float = 0.0
    status: str = "running"
    exit_code: int | None = None
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def reject(self, source: str, reason: str, row: int | None = None) -> None:
        self.rejected.append({"input": source, "row": row, "reason": reason})

    def finish(self, exit_code: int) -> None:
        self.duration_s = round(time.perf_counter() - self._t0, 3)
        self.exit_code = exit_code
        self.status = {EXIT_OK: "ok", EXIT_PARTIAL: "partial"}.get(exit_code, "failed")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_t0", None)
        return d

    def write(self, path: str | os.PathLike[str]) -> Path:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str))
        return Path(path)


def record_failure(path: str | os.PathLike[str], job: str, model_path: str, params: dict[str, Any],
                   exc: BaseException) -> None:
    """A job that failed for a reason other than bad input: a `failed` manifest saying why, so a
    scheduler can see it (written only where the output's folder exists)."""
    failed = RunManifest(job=job, model_path=model_path, model_hash="", params=params)
    failed.reject("*", f"{type(exc).__name__}: {exc}")
    failed.finish(EXIT_FAILURE)
    if Path(path).parent.is_dir():
        failed.write(path)


def finish_and_write(manifest: RunManifest, path: str | os.PathLike[str]) -> None:
    """Exit code 0, or 3 when anything was rejected; then the manifest beside the output."""
    manifest.finish(EXIT_PARTIAL if manifest.rejected else EXIT_OK)
    manifest.write(path)


def manifest_path_for(output: str | os.PathLike[str]) -> Path:
    return Path(str(output) + MANIFEST_SUFFIX)


def is_up_to_date(manifest: str | os.PathLike[str], model_hash: str, inputs: list[dict[str, Any]],
                  params: dict[str, Any]) -> bool:
    """True when a finished run with the same model, inputs and parameters already wrote its outputs."""
    path = Path(manifest)
    if not path.is_file():
        return False
    try:
        old = parse_json(path.read_bytes(), "manifest")
    except (UserError, OSError):
        return False
    if not isinstance(old, dict):
        return False
    def key(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(i["path"], i["sha256"]) for i in items]

    same_inputs = key(old.get("inputs", [])) == key(inputs)
    outputs = [Path(o) for o in old.get("outputs", [])]
    shards_there = all(outputs and (outputs[0] / str(s.get("file"))).is_file() for s in old.get("shards", []))
    return (old.get("status") in ("ok", "partial") and old.get("model_hash") == model_hash and same_inputs
            and old.get("params") == params and all(o.is_file() or o.is_dir() for o in outputs) and shards_there)
