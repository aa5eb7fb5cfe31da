"""Tables in and out for batch jobs: inputs found by file, folder or glob, read whole or in chunks
(bounded memory) with one-line errors, and written through a temp file renamed at the end, so a
killed job leaves the old output or the new one, never half of one."""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import UserError
from core.jobs.atomic import atomic_path

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")

# exact decimal → float parsing: pandas before 3.1 reads some values one unit in the last place off
# unless asked for round_trip; 3.1 made its default exact and deprecated the option (pandas 4 drops it)
_PANDAS = tuple(int(part) for part in re.findall(r"\d+", pd.__version__)[:2])
EXACT_FLOATS: dict[str, str] = {} if _PANDAS >= (3, 1) else {"float_precision": "round_trip"}


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be read as a data file (None when it is a regular file).

    Named pipes, sockets and devices would block or stream forever under a batch reader, so they
    are refused by what they are rather than reported as missing or empty.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file; pipe streams into `ae tsad monitor` instead"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is a device or special file, not a regular file"


def require_file(path: str | os.PathLike[str], what: str = "input") -> Path:
    """`path` as a Path, or a one-line UserError naming what it is instead of a regular file."""
    problem = file_problem(path)
    if problem is not None:
        raise UserError(f"{what} {path} {problem}")
    return Path(path)


def expand_inputs(spec: str | os.PathLike[str] | list[str]) -> list[Path]:
    """A file, a folder (its CSV/Parquet files) or a glob → sorted list of files; error if none."""
    specs = spec if isinstance(spec, list) else [spec]
    found: list[Path] = []
    for s in specs:
        p = Path(s)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in TABLE_SUFFIXES and q.is_file())
        elif p.exists() or not any(ch in str(s) for ch in "*?["):
            found.append(require_file(p))
        else:
            found += sorted(Path(q) for q in glob.glob(str(s), recursive=True) if Path(q).is_file())
    if not found:
        raise UserError(f"no CSV or Parquet input files found in {', '.join(map(str, specs))}")
    return list(dict.fromkeys(found))


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
    # round_trip: every number reads back exactly as written, on every pandas version (pandas 2's
    # default parser can be one unit in the last place off, so chunked and whole reads disagreed)
    try:
        yield from pd.read_csv(path, chunksize=chunk_rows, sep=sep, **EXACT_FLOATS, **read_kw)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty") from None
    except pd.errors.ParserError as exc:
        raise UserError(f"{path} cannot be parsed as CSV: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None


def read_table(path: str | os.PathLike[str], what: str = "data file") -> pd.DataFrame:
    """A whole CSV (separator sniffed) or Parquet file, with one-line errors for the usual problems."""
    path = require_file(path, what)
    if path.stat().st_size == 0:
        raise UserError(f"{what} {path} is empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=sniff_separator(path), **EXACT_FLOATS)
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


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a whole frame as Parquet or CSV (by suffix), atomically."""
    with TableWriter(path) as writer:
        writer.write(frame)
    return Path(path)


def separator_of(line: str) -> str:
    """The separator of one CSV line (a header): `,`, `;` or tab, whichever splits it most."""
    return max([",", ";", "\t"], key=line.count)


def check_outputs_apart(outputs: list[str | os.PathLike[str] | None],
                        inputs: list[str | os.PathLike[str] | None]) -> None:
    """Refuse a job whose output would overwrite one of its inputs (or another of its outputs), after
    resolving links: an atomic rename would otherwise replace the input with the job's result."""
    seen: dict[Path, str] = {}
    for role, paths in (("input", inputs), ("output", outputs)):
        for p in paths:
            if p is None:
                continue
            key = Path(p).resolve()
            if key in seen:
                raise UserError(f"{p} is both {seen[key]} and {role} of this job; write the output elsewhere")
            seen[key] = role
