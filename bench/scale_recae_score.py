"""Issue 15 bar: `ae recae score --engine ray --workers 2` on the generated 50,000 users x 10,000 items
catalogue (about 5 M ratings) gives the same 1 M rows as the local engine, in at most 1.5x its wall
time on this 2-core machine (Ray's start-up reported apart), with at most 1.5 GB peak RSS per worker.

Same run, same model (the `course` autoencoder, 1 epoch: quality is beside the point), k = 20, user
blocks of 4,096 (one unit of work and one shard each). Each engine runs 3 times; medians with the
spread. Ray is started once (`ray.init`, timed apart); each Ray job still pays its workers' start-up
(a process, torch import, model load), which is part of its time.
Usage: python bench/scale_recae_score.py [--repeats 3] [--workers 2]"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import table
from recae_score import generated

from core.engines import ray_engine
from core.engines.ray_engine import ray_session, read_shards
from recae.recommender import AutoencoderRecommender
from recae.scoring import score_all

BLOCK = 4096
FIRST_UNIT_S: list[float] = []


def timing_first_unit(map_units):  # noqa: ANN001, ANN201
    """Wrap ray_engine.map_units to note when each job's first unit comes back: until then the
    job waits for its workers (a process each, torch imported, the model loaded, Ray Data's pool)."""
    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        for i, item in enumerate(map_units(*args, **kwargs)):
            if i == 0:
                FIRST_UNIT_S.append(time.perf_counter() - start)
            yield item
    return wrapped


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        frame = generated(50_000, 10_000, 5_300_000)
        rec = AutoencoderRecommender(model="course", epochs=1, device="cpu").fit(frame)
        rec.save(tmp / "model")
        local_s, ray_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            local = score_all(tmp / "model", tmp / "local.parquet", k=20, batch_users=BLOCK, device="cpu")
            local_s.append(time.perf_counter() - t0)
        driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        startup = time.perf_counter() - t0
        ray_engine.map_units = timing_first_unit(ray_engine.map_units)
        try:
            with ray_session(None, args.workers):
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    sharded = score_all(tmp / "model", tmp / "sharded", k=20, batch_users=BLOCK, device="cpu",
                                        engine="ray", workers=args.workers)
                    ray_s.append(time.perf_counter() - t0)
        finally:
            ray.shutdown()
        keys = ["user", "rank"]
        a = pd.read_parquet(tmp / "local.parquet").sort_values(keys).reset_index(drop=True)
        b = read_shards(tmp / "sharded").sort_values(keys).reset_index(drop=True)
        same_rows = bool(a[["user", "item", "rank"]].equals(b[["user", "item", "rank"]]))
        max_diff = float(np.abs(a["score"].to_numpy(float) - b["score"].to_numpy(float)).max())
        by_worker: dict[int, list] = {}
        for s in sharded.shards:
            by_worker.setdefault(s["worker"]["pid"], []).append(s)
        worker_rows = [{"pid": pid, "shards": len(ss), "rows": sum(s["rows"] for s in ss),
                        "busy_s": round(sum(s["worker"]["seconds"] for s in ss), 3),
                        "peak_rss_mb": max(s["worker"]["peak_rss_mb"] for s in ss)} for pid, ss in by_worker.items()]
    ratio = statistics.median(ray_s) / statistics.median(local_s)
    after_first = [total - first for total, first in zip(ray_s, FIRST_UNIT_S)]
    result = {"catalogue": "generated 50,000 x 10,000", "ratings": len(frame), "model": "course", "k": 20,
              "block_users": BLOCK, "workers": args.workers, "rows_local": local.rows_out,
              "rows_ray": sharded.rows_out, "same_rows": same_rows, "max_score_diff": max_diff,
              "local_s": local_s, "ray_s": ray_s, "ray_startup_s": startup, "ray_over_local": ratio,
              "ray_first_unit_s": FIRST_UNIT_S, "ray_after_first_unit_s": after_first,
              "driver_peak_rss_mb": driver_rss, "workers_detail": worker_rows}
    rows = [["local (1 process, torch default threads)", local.rows_out, spread(local_s), "", "", "",
             f"{local.rows_out / statistics.median(local_s):,.0f}", f"{driver_rss:,.0f} (whole bench process)"],
            [f"ray, {args.workers} workers", sharded.rows_out, spread(ray_s), f"{ratio:.2f}x", f"{startup:.2f}",
             f"{spread(FIRST_UNIT_S)} / {spread(after_first)}",
             " / ".join(f"{w['rows'] / w['busy_s']:,.0f}" for w in worker_rows),
             " / ".join(f"{w['peak_rss_mb']:,.0f}" for w in worker_rows)]]
    table(f"recae score, generated 50k x 10k, k = 20 (median of {args.repeats}, min–max); rows identical: "
          f"{same_rows}, max |score diff| {max_diff:.2g}",
          ["engine", "rows", "wall s", "vs local", "Ray start-up s", "first unit s / rest s",
           "rows/s (per worker, busy)",
           "peak RSS MB (per worker)"], rows)
    out = Path(__file__).with_name("scale_recae_score.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
