"""SKAB, the skab preset's threshold re-tuned for the test-rows FAR (issue 11's SKAB bar, sixth round).

Why: after the fifth round (bench/tsad_skab_channels.py: three score channels) the bar is met in
SKAB's convention (whole files: F1 0.810, FAR 9.8 % on the evaluation part), but counting test rows
only, FAR is 21.4 %, 1.4 points above the bar's 20 %. That evaluation figure was seen before this
round was written: this round exists because of it, and says so.

Rule, fixed before any of its results was seen: split SKAB_SPLIT_RULE (tsad.evaluate); the skab
preset as it is now (three score channels) with trailing smoothing {10, 30, 60} x margin on the `max`
threshold {2.0, 2.25, 2.5, 3.0}, on the tuning part only, seed 0. Among the settings whose tuning
test-row FAR is at most 0.20, the best tuning test-row F1 wins (ties: first in grid order); if none
qualifies, the preset stays. The choice then runs with seeds 0, 1, 2 on the evaluation part beside
the preset, in both conventions (median, min–max). Record: bench/tsad_skab_test_rows.json.

Usage: AE_DATA_DIR=../shared/data python bench/tsad_skab_test_rows.py [--seeds 0,1,2] [--jobs 2]
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from _common import data_dir
from tsad_skab_whole_file import Runs, bench_args, evaluation_report, tuning_rows, write_record

from tsad.config import preset
from tsad.evaluate import SKAB_SPLIT_RULE, skab_halves, skab_pairs

OUT = Path(__file__).with_name("tsad_skab_test_rows.json")
FAR_CAP = 0.20
GRID = [{"scoring.smooth": k, "threshold.margin": m} for k, m in itertools.product((10, 30, 60), (2.0, 2.25, 2.5, 3.0))]


def main() -> None:
    args = bench_args()
    seeds = args.seeds
    t0 = time.perf_counter()
    names = [test.name for _, test in skab_pairs(data_dir())]
    tune, evaluate = skab_halves(names)
    runs = Runs()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        runs.run([(s, seeds[0], n) for s in GRID for n in tune], pool)
        grid = tuning_rows(runs, GRID, seeds[0], tune)
        capped = [g for g in grid if g["tuning_far"] <= FAR_CAP]
        chosen = max(capped, key=lambda g: g["tuning_f1"])["setting"] if capped else {}
        print(f"chosen: {chosen or 'none qualifies: the preset stays'} ({time.perf_counter() - t0:.0f} s)", flush=True)
        runs.run([(s, seed, n) for s in (chosen, {}) for seed in seeds for n in evaluate], pool)
    results = evaluation_report(runs, {"chosen, evaluation part": chosen, "skab preset now, evaluation part": {}},
                                seeds, evaluate, f"SKAB evaluation part ({len(evaluate)} files), threshold chosen "
                                f"on the tuning part by test-row FAR: {chosen}")
    current = preset("skab")
    doc = {"rule": SKAB_SPLIT_RULE, "protocol": __doc__.split("Usage:")[0].strip(), "tuning_files": tune,
           "evaluation_files": evaluate, "grid_seed": seeds[0], "far_cap": FAR_CAP, "grid": grid,
           "qualified": bool(capped), "chosen": chosen,
           "preset_now": {"scoring.smooth": current.scoring.smooth, "threshold.margin": current.threshold.margin,
                          "scoring.score_channels": list(current.scoring.score_channels or [])},
           "seeds": seeds, "results": results}
    write_record(OUT, doc, t0)


if __name__ == "__main__":
    main()
