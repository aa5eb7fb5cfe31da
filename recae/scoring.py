"""Batch top-K scoring of many users, streamed in user batches so memory stays bounded.

`score_batch(rec, user_idx, k)` is a pure function of (model, batch of users): both engines call
it. `score_all` writes Parquet/CSV through core.jobs.TableWriter (atomic) plus a run manifest; with
`engine="ray"` the blocks of users are scored by Ray workers (`UserBlockScorer`, one model per
worker) into a folder of Parquet shards (core.engines.ray_engine), with the same rows. A users
file's repeated ids are scored once (first place kept); the manifest's input entry records how many
were dropped (`duplicates_dropped`), and each unknown user is rejected with its 1-based line number
in the file (its first line, if repeated).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.artifact import directory_hash
from core.engines import check_engine
from core.engines.ray_engine import UnitResult, ray_session, require_ray, run_sharded
from core.errors import UserError
from core.jobs.hashing import file_digest
from core.jobs.manifest import EXIT_OK, EXIT_PARTIAL, RunManifest, manifest_path_for
from core.jobs.progress import track
from core.jobs.tables import TableWriter, check_outputs_apart, require_file
from recae.recommender import AutoencoderRecommender

log = logging.getLogger(__name__)


def score_batch(rec: AutoencoderRecommender, user_idx: np.ndarray, k: int) -> pd.DataFrame:
    top, vals = rec.score_users(user_idx, k)
    n = len(user_idx)
    ok = np.isfinite(vals)
    return pd.DataFrame({
        "user": np.repeat(rec.user_map_.to_raw(user_idx), top.shape[1])[ok.ravel()],
        "item": rec.item_map_.to_raw(top.ravel()[ok.ravel()]),
        "rank": np.tile(np.arange(1, top.shape[1] + 1), n)[ok.ravel()],
        "score": vals.ravel()[ok.ravel()].astype(np.float32),
    })


def read_user_list(path: Path) -> list[str]:
    """One user id per line (UTF-8; blank lines and a `user` header skipped), in file order, repeats kept."""
    return [user for _, user in read_user_lines(path)]


def read_user_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, user id) of each user listed, as `read_user_list` reads them: the line
    numbers let a rejected user be found in the file."""
    require_file(path, "users file")  # missing, a folder or a named pipe (which would block): one line
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise UserError(f"users file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line "
                        f"{line}); save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"cannot read users file {path}: {exc.strerror}") from None
    # line breaks as editors count them (str.splitlines also breaks at form feeds and the like)
    users = [(n, line.strip()) for n, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1)
             if line.strip() and line.strip() != "user"]
    if not users:
        raise UserError(f"users file {path} lists no users")
    return users


class UserBlockScorer:
    """A Ray worker's side of `score_all`: the model loaded once per worker from the model directory
    (which must hash as the driver's did), then `run(block)` for each block of user indices."""

    def __init__(self, model_dir: str, model_hash: str, k: int, device: str = "cpu") -> None:
        found = directory_hash(Path(model_dir))
        if found != model_hash:
            raise UserError(f"model {model_dir} on this worker has hash {found[:12]}, the driver's has "
                            f"{model_hash[:12]}: the nodes must see the same model directory")
        self.rec = AutoencoderRecommender.load(Path(model_dir), device=device)
        self.k = k

    def run(self, users: bytes) -> UnitResult:
        idx = np.frombuffer(users, dtype="<i8")
        return UnitResult(score_batch(self.rec, idx, self.k), {"users": int(len(idx))})


def score_params(k: int, engine: str = "local") -> dict[str, Any]:
    """What `--skip-existing` compares: the local engine writes a file, the ray engine a folder."""
    return {"k": k} if engine == "local" else {"k": k, "engine": engine}


def score_all(model_dir: Path, out: Path, k: int = 20, users_file: Path | None = None, batch_users: int = 1024,
              device: str = "auto", progress: bool = False, engine: str = "local", address: str | None = None,
              workers: int | None = None) -> RunManifest:
    """Top-k for every user (or those in `users_file`) into `out` plus OUT.manifest.json. The local
    engine writes one .parquet/.csv file; `engine="ray"` writes OUT as a folder of Parquet shards
    (`part-NNNNN.parquet`, one per block of `batch_users` users) scored by `workers` Ray workers."""
    check_engine(engine, address, workers)
    if k < 1:
        raise UserError(f"-k must be at least 1, got {k}")
    if batch_users < 1:
        raise UserError(f"--batch-users must be at least 1, got {batch_users}")
    if engine == "local" and out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise UserError("--out must end in .parquet or .csv")
    if engine == "ray" and out.suffix.lower() == ".csv":
        raise UserError("--engine ray writes a folder of Parquet shards: give --out a folder name, not .csv")
    check_outputs_apart([out, manifest_path_for(out)], [users_file])
    if engine == "ray":
        require_ray()  # before the model loads: a missing extra is one line, at once
    rec = AutoencoderRecommender.load(model_dir, device=device)
    model_hash = directory_hash(model_dir)
    manifest = RunManifest(job="recae score", model_path=str(model_dir), model_hash=model_hash,
                           params=score_params(k, engine), outputs=[str(out)])
    if users_file is not None:
        lines = read_user_lines(users_file)
        listed = [user for _, user in lines]
        found = rec.user_map_.index_array(np.asarray(listed, dtype=object))
        # a user listed twice (also as `7` and `07` of the same int id) is scored once, at its first place
        first: dict[int | str, int] = {}  # scored index, or unknown id as written -> first line
        for (line, user), i in zip(lines, found):
            first.setdefault(int(i) if i >= 0 else user, line)
        dropped = len(listed) - len(first)
        if dropped:
            log.warning("%s: %d repeated user id(s) dropped, keeping the first of each", users_file, dropped)
        manifest.inputs.append({"path": str(users_file), "sha256": file_digest(users_file), "rows": len(listed),
                                "duplicates_dropped": dropped})
        for key, line in first.items():
            if isinstance(key, str):
                manifest.reject(str(users_file), f"unknown user {key}", row=line)
        idx = np.asarray([key for key in first if not isinstance(key, str)], dtype=np.int64)
    else:
        idx = np.arange(len(rec.user_map_))
    manifest.rows_in = int(len(idx) + len(manifest.rejected))
    if engine == "ray":
        blocks = [idx[start:start + batch_users].astype("<i8").tobytes() for start in range(0, len(idx), batch_users)]
        worker = {"model_dir": str(Path(model_dir).resolve()), "model_hash": model_hash, "k": k,
                  "device": "cpu" if device == "auto" else device}
        with ray_session(address, workers) as n:
            shards = run_sharded(out, blocks, UserBlockScorer, worker, n, progress, "scoring users")
        manifest.engine = {"name": "ray", "workers": n, "address": address}
        manifest.shards = [{"file": s.file, "rows": s.rows, "users": s.meta["users"], "worker": s.worker}
                           for s in shards if s.file]
        manifest.rows_out = sum(s.rows for s in shards)
    else:
        with TableWriter(out) as writer:
            for start in track(range(0, len(idx), batch_users), "scoring users", progress):
                writer.write(score_batch(rec, idx[start:start + batch_users], k))
        manifest.rows_out = writer.rows
    manifest.finish(EXIT_PARTIAL if manifest.rejected else EXIT_OK)
    manifest.write(manifest_path_for(out))
    return manifest
