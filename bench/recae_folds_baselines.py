"""The top-N baselines alone on the `folds` protocol (ML-100K, 5 user folds, split seed 0), each tuned
on the fold's validation users over its grid in recae.baselines.TOPN_BASELINES: mean ± std over the
folds and each fold's choice. The baselines are deterministic, so this reproduces the baseline rows
of bench/recae_folds.py (which also trains the autoencoders) in a minute on a CPU; it exists to rerun
a baseline after its grid changes without the autoencoders' device time.
Usage: AE_DATA_DIR=../shared/data python bench/recae_folds_baselines.py [--baselines rp3beta,ease]
       [--json bench/recae_folds_baselines.json]"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import data_dir, table
from recae_folds import SHOWN, _setting

from core.jobs.atomic import atomic_write_text
from recae.baselines import TOPN_BASELINES
from recae.datasets import load_ml100k
from recae.protocol import run_protocol, user_folds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baselines", default=",".join(TOPN_BASELINES))
    ap.add_argument("--json", default=str(Path(__file__).with_name("recae_folds_baselines.json")))
    args = ap.parse_args()
    names = args.baselines.split(",")
    t0 = time.perf_counter()
    splits = user_folds(load_ml100k(data_dir()), seed=0)
    result = run_protocol(splits, [], lambda name: None, baselines=names)
    results, tuning = result.results(), result.tuning()
    rows = [[name, *(f"{results[name][m]['mean']:.4f} ± {results[name][m]['std']:.4f}" for m in SHOWN),
             _setting(tuning[name]["chosen"])] for name in names]
    doc = {"protocol": __doc__.split("Usage:")[0].strip(), "split_seed": 0, "results": results, "tuning": tuning,
           "seconds_per_baseline": result.seconds()}
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    table(f"Top-N baselines, ML-100K 5 user folds (split seed 0), tuned on validation users ({doc['seconds']:.0f} s)",
          ["baseline", *SHOWN, "chosen (folds)"], rows)
    atomic_write_text(args.json, json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
