"""The `ray` engine: a batch job's units of work scored on a Ray cluster, written as Parquet shards.

Why this shape. A job is a list of units (a block of users, a file, a series) and a worker class
that loads the model once and turns one unit into a table plus a little JSON metadata. Ray Data's
`map_batches` runs a pool of those workers (one actor per `--workers`, one CPU and one torch thread
each), feeds them one unit at a time and restarts a worker that dies, retrying its unit; the driver
receives each unit's table already encoded as Parquet and writes it as `part-NNNNN.parquet` into a
temporary folder that replaces OUT in one rename when every unit is done (core.jobs.atomic), so a
killed job leaves the previous output or none. Shards are named by unit, so a retried unit can
never appear twice, and the driver needs no shared filesystem with the workers: a laptop can drive
a remote cluster through `--address` (the model directory must be readable at the same path on every
node; each worker checks its hash against the driver's).

Ray is an optional extra: it is imported here only, and `require_ray` turns its absence into one
line naming the extra.
"""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.engines import RAY_EXTRA
from core.errors import UnavailableError, UserError
from core.jobs.atomic import atomic_dir

log = logging.getLogger(__name__)

SHARD_PATTERN = "part-{:05d}.parquet"
# a local Ray for one job: a small object store (units and shards pass through it one at a time)
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 ** 2
# test-only fault injection: a path whose folder exists; the first worker call that finds the file
# absent creates it and kills its own process, so a test can check that Ray retries the unit
KILL_ONCE_ENV = "AE_ENGINE_KILL_ONCE"
PROBE_TIMEOUT_S = 10.0


def require_ray() -> Any:
    """The `ray` module, or one line naming the extra that installs it (exit 2)."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


@contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator[int]:
    """Connect to the cluster at `address` (auto, HOST:PORT, ray://HOST:PORT), or start a local Ray
    with one CPU per worker; yields the number of workers to run. A Ray already initialised in this
    process is used as it is and left running; one started or joined here is shut down after."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        if address is not None:
            _probe(address)
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if address is None:
                cpus = workers or max(1, os.cpu_count() or 1)
                ray.init(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
            else:
                quiet.pop("include_dashboard")
                ray.init(address=address, **quiet)
        except (ConnectionError, TimeoutError) as exc:
            raise UnavailableError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from None
        except (RuntimeError, ValueError) as exc:
            raise UnavailableError(f"cannot start or join Ray (--address {address}): {_first_line(exc)}") from None
        started = True
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        n = workers or max(1, cpus)
        if n > cpus:
            raise UserError(f"--workers {n} needs {n} CPUs; the Ray cluster has {cpus}")
        yield n
    finally:
        if started:
            ray.shutdown()


def _probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast on a HOST:PORT nobody listens at: `ray.init` would retry it for many minutes."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--address {address}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UnavailableError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@dataclass
class UnitResult:
    """What a worker returns for one unit: its rows (None: none) and JSON-able facts about it."""

    table: pd.DataFrame | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Shard:
    """One unit's outcome on the driver: the shard file written (None when it had no rows)."""

    unit: int
    rows: int
    file: str | None
    meta: dict[str, Any]
    # the worker that ran it: pid, seconds on the unit, the process's peak RSS so far (MB)
    worker: dict[str, Any] = field(default_factory=dict)


class _UnitActor:
    """Ray Data's callable class: builds the app's worker once per actor, then runs units."""

    def __init__(self, worker_cls: type, worker_kwargs: dict[str, Any], refs: list[Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.worker = worker_cls(**worker_kwargs)
        self.refs = refs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        units, metas, payloads = [], [], []
        for unit in batch["unit"]:
            _maybe_die()
            start = time.perf_counter()
            result = self.worker.run(ray.get(self.refs[int(unit)][0]))
            units.append(int(unit))
            rows = 0 if result.table is None else len(result.table)
            worker = {"pid": os.getpid(), "seconds": round(time.perf_counter() - start, 4),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
            metas.append(json.dumps({"rows": rows, "worker": worker, **result.meta}, default=str))
            payloads.append(_parquet_bytes(result.table) if rows else b"")
        return {"unit": np.asarray(units, dtype=np.int64), "meta": np.asarray(metas, dtype=object),
                "payload": np.asarray(payloads, dtype=object)}


def _maybe_die() -> None:
    marker = os.environ.get(KILL_ONCE_ENV)  # armed only while the marker's folder exists
    if marker and os.path.isdir(os.path.dirname(marker)) and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)


def _parquet_bytes(table: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), buffer)
    return buffer.getvalue()


def map_units(units: list[Any], worker_cls: type, worker_kwargs: dict[str, Any], workers: int,
              on_done: Callable[[], None] | None = None) -> Iterator[tuple[int, dict[str, Any], bytes]]:
    """Run `worker_cls(**worker_kwargs).run(unit)` for every unit on `workers` Ray actors (Ray Data
    `map_batches`, one unit per call); yields (unit index, metadata, Parquet bytes) as units finish,
    in any order. Must run inside `ray_session`."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    # each unit in the object store; the actors get the references (a list, so Ray does not resolve them)
    refs = [[ray.put(unit)] for unit in units]
    items = ray.data.from_items([{"unit": i} for i in range(len(units))], override_num_blocks=max(1, len(units)))
    results = items.map_batches(
        _UnitActor, batch_size=1, batch_format="numpy", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=min(workers, max(1, len(units)))),
        fn_constructor_kwargs={"worker_cls": worker_cls, "worker_kwargs": worker_kwargs, "refs": refs,
                               "threads": 1})
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        for unit, meta, payload in zip(batch["unit"], batch["meta"], batch["payload"]):
            yield int(unit), json.loads(meta), bytes(payload)
            if on_done is not None:
                on_done()


def run_sharded(out_dir: Path, units: list[Any], worker_cls: type, worker_kwargs: dict[str, Any], workers: int,
                progress: bool = False, description: str = "scoring") -> list[Shard]:
    """Every unit scored by the workers and written as `OUT/part-<unit>.parquet` (units without rows
    write no shard); OUT appears complete in one rename, or not at all. Returns the shards by unit."""
    from core.jobs.progress import progress_bar

    shards: dict[int, Shard] = {}
    with atomic_dir(out_dir) as tmp, progress_bar(progress) as prog:
        task = prog.add_task(description, total=len(units)) if prog else None
        advance = (lambda: prog.advance(task)) if prog else None
        for unit, meta, payload in map_units(units, worker_cls, worker_kwargs, workers, advance):
            name = SHARD_PATTERN.format(unit) if payload else None
            if name is not None:
                (tmp / name).write_bytes(payload)
            shards[unit] = Shard(unit, int(meta.pop("rows")), name, meta, meta.pop("worker", {}))
        missing = sorted(set(range(len(units))) - set(shards))
        if missing:  # Ray lost units without raising: never commit a partial output
            raise RuntimeError(f"the Ray job returned no result for {len(missing)} of {len(units)} units")
    return [shards[i] for i in range(len(units))]


def read_shards(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """A shard folder as one table, in unit order (for tests and small outputs)."""
    files = sorted(Path(out_dir).glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
