"""Bar (issue 15): `ae recae score` (recae.scoring.score_all) of a generated 50,000 users x 10,000
items catalogue (5 M ratings), k = 20, all users, within 3x of a bare torch pass over the same users
timed in the same run: densify each batch's rows, forward pass, seen items set to -inf, torch.topk.

The model is `course`, the user-based model users of a catalogue this size have: the CLI's default
(`autorec`) is item-based and refuses a 50k x 10k catalogue (it needs the full users x items matrix).
It is trained for 1 epoch (its quality is irrelevant here). Each timed run is a fresh worker process
(so peak RSS is per side), the two sides interleaved, median of --repeats runs each; the model load
(and its directory hash for the manifest) is inside (a), outside (b).

Usage: python bench/recae_score_limit.py [--repeats 3] [--profile]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import table
from recae_score import generated

from recae.recommender import AutoencoderRecommender
from recae.scoring import score_all

HERE = Path(__file__).resolve().parent
K = 20
BATCH = 1024  # score_all's default batch_users


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare(model_dir: Path, repeats: int) -> dict:
    import torch

    rec = AutoencoderRecommender.load(model_dir, device="cpu")  # the module and matrices, loaded once
    module, train, seen, inputs = rec.module_.eval(), rec.train_, rec.seen_, rec.spec.inputs
    n = train.shape[0]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            for s in range(0, n, BATCH):
                rows = train[s:s + BATCH]
                x, _ = inputs(torch.from_numpy(rows.toarray()))
                out = module.reconstruct(x)
                m = seen[s:s + BATCH]  # numpy's fancy assignment on the tensor's memory: faster than index_put_
                out.numpy()[np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)), m.indices] = -np.inf
                torch.topk(out, K, dim=1)
        times.append(time.perf_counter() - t0)
    return {"times": times, "peak_rss_mb": peak_rss_mb()}


def score(model_dir: Path, repeats: int, profile: bool) -> dict:
    times, rows = [], 0
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeats):
            t0 = time.perf_counter()
            man = score_all(model_dir, Path(d) / "scores.parquet", k=K, device="cpu")
            times.append(time.perf_counter() - t0)
            rows = man.rows_out
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(score_all, model_dir, Path(d) / "scores.parquet", k=K, device="cpu")
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return {"times": times, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def worker(mode: str, model_dir: Path, repeats: int, profile: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--model-dir", str(model_dir),
                          "--repeats", str(repeats), *(["--profile"] if profile else [])],
                         check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also cProfile one score_all run (to stderr)")
    ap.add_argument("--worker", choices=["bare", "score"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=HERE / "recae_score_limit.json")
    args = ap.parse_args()
    if args.worker:
        res = bare(args.model_dir, args.repeats) if args.worker == "bare" else \
            score(args.model_dir, args.repeats, args.profile)
        print(json.dumps(res))
        return
    import torch

    frame = generated(50_000, 10_000, 5_300_000)
    with tempfile.TemporaryDirectory() as d:
        model_dir = Path(d) / "course"
        t0 = time.perf_counter()
        rec = AutoencoderRecommender(model="course", epochs=1, device="cpu").fit(frame)
        rec.save(model_dir)
        fit_s = time.perf_counter() - t0
        shape = (len(rec.user_map_), len(rec.item_map_))
        del rec
        b = {"times": [], "peak_rss_mb": 0.0}
        s = {"times": [], "peak_rss_mb": 0.0}
        for r in range(args.repeats):  # interleaved, one fresh process per run: shared-machine noise hits both
            for side, mode in ((b, "bare"), (s, "score")):
                one = worker(mode, model_dir, 1, args.profile and r == args.repeats - 1 and mode == "score")
                side["times"] += one["times"]
                side["peak_rss_mb"] = max(side["peak_rss_mb"], one["peak_rss_mb"])
                side["rows"] = one.get("rows")
    tb, ts = statistics.median(b["times"]), statistics.median(s["times"])
    ratio = ts / tb
    rows = [["bare torch pass (densify, forward, seen -inf, topk)", tb, s["rows"] / tb, b["peak_rss_mb"],
             " ".join(f"{t:.2f}" for t in b["times"])],
            ["score_all -> Parquet (load, score, write)", ts, s["rows"] / ts, s["peak_rss_mb"],
             " ".join(f"{t:.2f}" for t in s["times"])]]
    table(f"recae score, generated {shape[0]:,} users x {shape[1]:,} items ({len(frame):,} ratings), model course "
          f"(1 epoch), k = {K}, batches of {BATCH:,}, torch threads {torch.get_num_threads()}: ratio {ratio:.2f}x",
          ["path", "median s", "rows/s", "peak RSS MB", f"runs ({args.repeats})"], rows)
    doc = {"catalogue": {"users": shape[0], "items": shape[1], "ratings": len(frame)}, "model": "course",
           "epochs": 1, "fit_and_save_s": round(fit_s, 2), "k": K, "batch_users": BATCH, "repeats": args.repeats,
           "torch_threads": torch.get_num_threads(), "rows_out": s["rows"],
           "bare": {"median_s": round(tb, 3), "runs_s": [round(t, 3) for t in b["times"]],
                    "rows_per_s": round(s["rows"] / tb), "peak_rss_mb": round(b["peak_rss_mb"])},
           "score_all": {"median_s": round(ts, 3), "runs_s": [round(t, 3) for t in s["times"]],
                         "rows_per_s": round(s["rows"] / ts), "peak_rss_mb": round(s["peak_rss_mb"])},
           "ratio": round(ratio, 2), "bar": 3.0, "passes": ratio <= 3.0}
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
