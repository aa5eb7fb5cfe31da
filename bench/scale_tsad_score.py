"""Issue 15 bar: `ae tsad score --engine ray --workers 2` over 1,000 generated series of 10,000 rows
(one Parquet file each) gives the local engine's rows and scores; rows/s per worker reported.

Same run, same detector (window 32, 2 channels, 3 epochs on one normal series: quality is beside the
point), no --state. The local engine runs once per repeat, then the ray engine on a Ray started once
(its start-up timed apart). Medians of the repeats with min–max.
Usage: python bench/scale_tsad_score.py [--series 1000] [--rows 10000] [--repeats 1] [--workers 2]"""

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
from typer.testing import CliRunner

from cli import app
from core.engines.ray_engine import ray_session, read_shards
from tsad.scorejob import EngineOptions, score_job


def series(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi)
    return pd.DataFrame({"timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(t, unit="min"),
                         "v0": np.sin(2 * np.pi * t / 288 + phase) + 0.1 * rng.standard_normal(n),
                         "v1": np.cos(2 * np.pi * t / 288 + phase) + 0.1 * rng.standard_normal(n)})


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        series(5000, 10_000).to_csv(tmp / "train.csv", index=False)
        result = CliRunner().invoke(app, ["tsad", "train", "--data", str(tmp / "train.csv"), "--out",
                                          str(tmp / "det"), "--window", "32", "--epochs", "3", "--device", "cpu",
                                          "--quiet"])
        assert result.exit_code == 0, result.output
        (tmp / "in").mkdir()
        for i in range(args.series):
            series(args.rows, i).to_parquet(tmp / "in" / f"s{i:05d}.parquet", index=False)
        inputs = [str(tmp / "in" / "*.parquet")]
        local_s, ray_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            local, _ = score_job(tmp / "det", inputs, tmp / "local.parquet", device="cpu")
            local_s.append(time.perf_counter() - t0)
        driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        startup = time.perf_counter() - t0
        try:
            with ray_session(None, args.workers):
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    sharded, _ = score_job(tmp / "det", inputs, tmp / "sharded", device="cpu",
                                           engine=EngineOptions("ray", None, args.workers))
                    ray_s.append(time.perf_counter() - t0)
        finally:
            ray.shutdown()
        keys = ["source", "timestamp"]
        a = pd.read_parquet(tmp / "local.parquet").sort_values(keys).reset_index(drop=True)
        b = read_shards(tmp / "sharded").sort_values(keys).reset_index(drop=True)
        identical = bool(a.equals(b))
        by_worker: dict[int, list] = {}
        for s in sharded.shards:
            by_worker.setdefault(s["worker"]["pid"], []).append(s)
        workers = [{"pid": pid, "series": len(ss), "rows": sum(s["rows"] for s in ss),
                    "busy_s": round(sum(s["worker"]["seconds"] for s in ss), 2),
                    "peak_rss_mb": max(s["worker"]["peak_rss_mb"] for s in ss)} for pid, ss in by_worker.items()]
    rows_total = local.rows_out
    ratio = statistics.median(ray_s) / statistics.median(local_s)
    table(f"tsad score, {args.series:,} series x {args.rows:,} rows (Parquet files), window 32; outputs identical: "
          f"{identical}",
          ["engine", "rows", "wall s", "vs local", "Ray start-up s", "rows/s (per worker, busy)",
           "peak RSS MB (per worker)"],
          [["local (1 process, torch default threads)", rows_total, spread(local_s), "", "",
            f"{rows_total / statistics.median(local_s):,.0f}", f"{driver_rss:,.0f} (whole bench process)"],
           [f"ray, {args.workers} workers", sharded.rows_out, spread(ray_s), f"{ratio:.2f}x", f"{startup:.1f}",
            " / ".join(f"{w['rows'] / w['busy_s']:,.0f}" for w in workers),
            " / ".join(f"{w['peak_rss_mb']:,.0f}" for w in workers)]])
    out = Path(__file__).with_name("scale_tsad_score.json")
    out.write_text(json.dumps({"series": args.series, "rows_per_series": args.rows, "workers": args.workers,
                               "rows_local": rows_total, "rows_ray": sharded.rows_out, "identical": identical,
                               "local_s": local_s, "ray_s": ray_s, "ray_startup_s": startup,
                               "ray_over_local": ratio, "driver_peak_rss_mb": driver_rss,
                               "workers_detail": workers}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
