"""SKAB's false-alarm rate in its own convention beside ours (issue 11's SKAB bar).

SKAB's leaderboard (its Conv-AE notebook and `core/metrics.py`, `chp_score(..., metric="binary")`)
trains on each file's first 400 rows, predicts on the **whole file** and counts every row: the
training rows, where a detector seldom alarms, are true negatives in its FAR. Our `far` counts the
test rows only. `ae tsad evaluate --benchmark skab` now reports both (`far` and `far_whole_file`, the
same for F1 and MAR); this script runs the skab preset unchanged (its settings were chosen on the
tuning part by bench/tsad_skab_protocol.py, nothing is chosen here) for seeds 0, 1, 2 and prints the
evaluation part in both conventions, beside the baselines of the same run and two trivial detectors
(flag every test row; flag every row). Record: bench/tsad_skab_conventions.json.

Usage: AE_DATA_DIR=../shared/data python bench/tsad_skab_conventions.py [--seeds 0 1 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import data_dir, median_range, table

from tsad import metrics as M
from tsad.config import preset
from tsad.evaluate import SPLITS, run_benchmark, skab_pairs

OUT = Path(__file__).with_name("tsad_skab_conventions.json")
KEYS = ("f1", "far", "mar", "f1_whole_file", "far_whole_file", "mar_whole_file")


def trivial(evaluation: list[str]) -> dict[str, dict[str, float]]:
    """Flag every test row / every row of the evaluation files, in both conventions."""
    pairs = [p for p in skab_pairs(data_dir()) if p[1].name in set(evaluation)]
    y_test = np.concatenate([te.labels for _, te in pairs])
    y_all = np.concatenate([np.concatenate([tr.labels, te.labels]) for tr, te in pairs])
    every_test = np.concatenate([np.concatenate([np.zeros(len(tr), bool), np.ones(len(te), bool)]) for tr, te in pairs])
    out = {}
    for name, pred_all in (("flag every test row", every_test), ("flag every row", np.ones(len(y_all), bool))):
        pred_test = np.ones(len(y_test), bool)
        far, mar = M.far_mar(y_test, pred_test)
        far_w, mar_w = M.far_mar(y_all, pred_all)
        out[name] = {"f1": M.point_prf(y_test, pred_test)["f1"], "far": far, "mar": mar,
                     "f1_whole_file": M.point_prf(y_all, pred_all)["f1"], "far_whole_file": far_w,
                     "mar_whole_file": mar_w}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runs = []
    for seed in args.seeds:
        r = run_benchmark("skab", preset("skab"), seed=seed, device=args.device)
        runs.append({"seed": seed, "metrics": r.metrics, "baselines": r.baselines})
        print(f"seed {seed}: " + ", ".join(f"{k} {r.metrics[k]:.4f}" for k in KEYS), flush=True)
    names = [p[1].name for p in skab_pairs(data_dir())]
    _, evaluation = SPLITS["skab"].halves(names)
    rows_by_name: dict[str, dict[str, list[float]]] = {"conv AE, skab preset (ours)": {
        k: [r["metrics"][k] for r in runs] for k in KEYS}}
    for b in runs[0]["baselines"]:
        rows_by_name[b] = {k: [r["baselines"][b][k] for r in runs] for k in KEYS}
    for name, m in trivial(evaluation).items():
        rows_by_name[name] = {k: [m[k]] for k in KEYS}
    table(f"SKAB evaluation part ({len(evaluation)} files), seeds {' '.join(map(str, args.seeds))}: median (min–max)",
          ["detector", "F1 (test rows)", "FAR (test rows)", "MAR (test rows)", "F1 (whole files, SKAB's)",
           "FAR (whole files, SKAB's)", "MAR (whole files, SKAB's)"],
          [[name, *[median_range(m[k]) for k in KEYS]] for name, m in rows_by_name.items()])
    doc = {"protocol": __doc__.split("\n\n")[1], "evaluation_files": evaluation, "seeds": args.seeds,
           "runs": runs, "summary": rows_by_name, "seconds": round(time.perf_counter() - t0, 1)}
    OUT.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
