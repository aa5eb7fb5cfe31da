"""Plumbing for scheduled batch jobs, shared by `ae tsad score` and `ae recae score`.

A job reads inputs in chunks (bounded memory), writes its output through a temp file renamed at the
end (a killed job leaves the old output or the new one, never half of one), and records a run
manifest: model path and content hash, input fingerprints, row counts, rejected rows with reasons,
duration and exit status. The manifest also makes re-runs idempotent: `is_up_to_date` says whether
the same model, inputs and parameters already produced the output.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from core.atomic import atomic_path, atomic_write_text
from core.errors import UserError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
MANIFEST_SUFFIX = ".manifest.json"


def expand_inputs(spec: str | os.PathLike[str] | list[str]) -> list[Path]:
    """A file, a folder (its CSV/Parquet files) or a glob → sorted list of files; error if none."""
    specs = spec if isinstance(spec, list) else [spec]
    found: list[Path] = []
    for s in specs:
        p = Path(s)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in TABLE_SUFFIXES and q.is_file())
        elif p.is_file():
            found.append(p)
        elif any(ch in str(s) for ch in "*?["):
            found += sorted(Path(q) for q in glob.glob(str(s), recursive=True) if Path(q).is_file())
        else:
            raise UserError(f"input {s} does not exist")
    if not found:
        raise UserError(f"no CSV or Parquet input files found in {', '.join(map(str, specs))}")
    return list(dict.fromkeys(found))


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes: the identity of an input for idempotent re-runs."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_table_chunks(path: str | os.PathLike[str], chunk_rows: int = 100_000,
                      **read_kw: Any) -> Iterator[pd.DataFrame]:
    """Read a CSV or Parquet file in chunks of at most `chunk_rows` rows, so memory stays bounded."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise UserError(f"{path} is not a readable Parquet file: {exc}") from None
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
        return
    sep = read_kw.pop("sep", None) or sniff_separator(path)
    try:
        yield from pd.read_csv(path, chunksize=chunk_rows, sep=sep, **read_kw)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty") from None
    except pd.errors.ParserError as exc:
        raise UserError(f"{path} cannot be parsed as CSV: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None


def read_table(path: str | os.PathLike[str], what: str = "data file") -> pd.DataFrame:
    """A whole CSV (separator sniffed) or Parquet file, with one-line errors for the usual problems."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a {what}")
    if path.stat().st_size == 0:
        raise UserError(f"{what} {path} is empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=sniff_separator(path))
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise UserError(f"{path} has no data rows")
    return frame


def sniff_separator(path: str | os.PathLike[str]) -> str:
    """`,`, `;` or tab, whichever splits the header line most (SKAB uses `;`)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return max([",", ";", "\t"], key=header.count)


class TableWriter:
    """Append DataFrame chunks to a CSV or Parquet file that appears atomically on `commit`.

    Use as a context manager: leaving the block normally commits, an exception discards the temp.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.format = "parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "csv"
        self.rows = 0
        self._ctx = atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer: Any = None
        self._schema: Any = None

    def __enter__(self) -> TableWriter:
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, frame: pd.DataFrame) -> None:
        assert self._tmp is not None, "use TableWriter as a context manager"
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._writer is None:
                self._schema = table.schema
                self._writer = pq.ParquetWriter(self._tmp, self._schema)
            else:
                table = table.cast(self._schema)
            self._writer.write_table(table)
        else:
            frame.to_csv(self._tmp, mode="a" if self.rows or self._writer else "w", header=self._writer is None,
                         index=False)
            self._writer = True
        self.rows += len(frame)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self.format == "parquet" and self._writer is not None:
            self._writer.close()
        if exc_type is None and self._writer is None and self._tmp is not None:
            # nothing was written: still produce a valid, empty file
            open(self._tmp, "w").close()
        return bool(self._ctx.__exit__(exc_type, exc, tb))


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
        self.status = {0: "ok", 3: "partial"}.get(exit_code, "failed")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_t0", None)
        return d

    def write(self, path: str | os.PathLike[str]) -> Path:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str))
        return Path(path)


def manifest_path_for(output: str | os.PathLike[str]) -> Path:
    return Path(str(output) + MANIFEST_SUFFIX)


def is_up_to_date(manifest: str | os.PathLike[str], model_hash: str, inputs: list[dict[str, Any]],
                  params: dict[str, Any]) -> bool:
    """True when a finished run with the same model, inputs and parameters already wrote its outputs."""
    path = Path(manifest)
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return False
    def key(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(i["path"], i["sha256"]) for i in items]

    same_inputs = key(old.get("inputs", [])) == key(inputs)
    return (old.get("status") in ("ok", "partial") and old.get("model_hash") == model_hash and same_inputs
            and old.get("params") == params and all(Path(o).is_file() for o in old.get("outputs", [])))
