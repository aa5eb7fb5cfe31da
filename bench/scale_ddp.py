"""Bar: `course` on ML-100K u1 trained data-parallel on 2 Ray Train workers (torch DDP, gloo) lands
within 0.01 test RMSE of 1 worker with the same global batch and seed: |RMSE(2) − RMSE(1)| ≤ 0.01 for
the median over seeds 0, 1, 2 (and each seed is shown). Wall time of each fit beside it: the 2-worker
time includes starting the Ray Train worker group (the local Ray instance itself is started once,
before the fits, and its start-up is reported on its own line). The 1-worker fit runs on --threads
torch threads (default 1, what each of the 2 workers gets on a 2-core machine): the same arithmetic
per process, and on a shared 2-core machine 2 threads ran the 1-worker fit 10x slower (149 s vs 13 s).
Course's 200 epochs of never-zeroed gradients carry float rounding far: the 1-worker fit of seed 1 on
1 thread vs 2 threads alone differs by 0.009 RMSE (0.9644 vs 0.9736), so a per-seed difference of
that size is rounding, not the data-parallel step; the bar is on the median over seeds.

Usage: AE_DATA_DIR=../shared/data python bench/scale_ddp.py [--epochs 200] [--seeds 0 1 2] [--workers 2]
Writes bench/scale_ddp.json."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from _common import data_dir, median, table

from recae.datasets import load_ml100k_fold
from recae.evaluate import evaluate_explicit
from recae.recommender import AutoencoderRecommender

BAR = 0.01


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the 1-worker fit (the driver)")
    ap.add_argument("--json", default=str(Path(__file__).with_name("scale_ddp.json")))
    args = ap.parse_args()
    import ray
    import torch

    torch.set_num_threads(args.threads)
    train, test = load_ml100k_fold(data_dir(), "u1")
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=max(2, args.workers), include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    ray_start = time.perf_counter() - t0
    runs = []
    try:
        for seed in args.seeds:
            for workers in (1, args.workers):
                rec = AutoencoderRecommender(model="course", epochs=args.epochs, device="cpu", seed=seed,
                                             workers=workers)
                t1 = time.perf_counter()
                result = evaluate_explicit(rec, train, test)
                wall = time.perf_counter() - t1
                m = result["metrics"]
                runs.append({"seed": seed, "workers": workers, "rmse": m["rmse"], "course_rmse": m["course_rmse"],
                             "mae": m["mae"], "final_train_loss": rec.history_.train_loss[-1],
                             "train_seconds": result["train_seconds"], "wall_seconds": round(wall, 1)})
                print(f"seed {seed} workers {workers}: RMSE {m['rmse']:.4f} in {wall:.1f} s", flush=True)
    finally:
        ray.shutdown()
    rows, diffs = [], []
    for seed in args.seeds:
        one = next(r for r in runs if r["seed"] == seed and r["workers"] == 1)
        many = next(r for r in runs if r["seed"] == seed and r["workers"] == args.workers)
        diff = many["rmse"] - one["rmse"]
        diffs.append(diff)
        rows.append([seed, one["rmse"], many["rmse"], f"{diff:+.5f}", one["course_rmse"], many["course_rmse"],
                     f"{one['train_seconds']:.1f}", f"{many['train_seconds']:.1f}"])
    med = median(diffs)
    rows.append(["median", "", "", f"{med:+.5f}", "", "", f"{median([float(r[6]) for r in rows]):.1f}",
                 f"{median([float(r[7]) for r in rows]):.1f}"])
    text = table(f"recae course, ML-100K u1, {args.epochs} epochs, global batch 64: 1 vs {args.workers} Ray Train "
                 f"workers (DDP, gloo; 1 worker on {args.threads} torch thread(s), each worker on 1)",
                 ["seed", "RMSE 1 worker", f"RMSE {args.workers} workers", "difference", "course measure 1",
                  f"course measure {args.workers}", "train s 1", f"train s {args.workers}"], rows)
    ok = abs(med) <= BAR
    print(f"local Ray start-up (once): {ray_start:.1f} s")
    print(f"bar: |median RMSE({args.workers}) - RMSE(1)| = {abs(med):.5f} (<= {BAR} needed); "
          f"largest per seed {max(abs(d) for d in diffs):.5f}: {'PASS' if ok else 'FAIL'}")
    Path(args.json).write_text(json.dumps({"bar": BAR, "epochs": args.epochs, "workers": args.workers,
                                           "threads_1_worker": args.threads,
                                           "ray_start_seconds": round(ray_start, 1), "runs": runs,
                                           "differences": diffs, "median_difference": med, "pass": ok,
                                           "table": text}, indent=2) + "\n")


if __name__ == "__main__":
    main()
