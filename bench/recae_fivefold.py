"""The five official ML-100K folds (u1..u5) with every setting chosen inside each fold's own base:
the product's `--tune` (recae.selection: a seeded 10 % of each user's ratings in uN.base held out, the
model's grid searched on it beside the bias baseline, a validation-chosen blend towards the baseline,
then a refit on all of uN.base), so no fold's test ratings, and no other fold's, ever choose a
setting. This answers the issue-14 review point that autorec's L2 was chosen on u1.base (which holds
u2..u5's test ratings) and reused for every fold. Models: glocalk and autorec (and `--models stack`,
whose weights are fitted inside each fold's base; it has no search of its own), seeds --seeds (median and
min–max over seeds per fold; the five-fold mean of the per-fold medians), beside the user+item bias
baseline of the same fold (deterministic). --jobs N runs N (fold, model, seed) fits at once, each on
one torch thread.
Usage: AE_DATA_DIR=../shared/data python bench/recae_fivefold.py [--seeds 0,1,2] [--models glocalk,autorec]
       [--jobs 2] [--device cpu] [--json bench/recae_fivefold.json]"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from _common import data_dir, table

from core.jobs.atomic import atomic_write_text

FOLDS = ("u1", "u2", "u3", "u4", "u5")


def run(fold: str, model: str, seed: int, device: str) -> tuple[str, str, int, dict]:
    """One product fit with --tune on uN.base, scored on uN.test (a worker)."""
    import torch

    from recae.datasets import load_ml100k_fold
    from recae.evaluate import evaluate_explicit
    from recae.recommender import AutoencoderRecommender
    from recae.selection import SelectionPlan  # budget as the CLI's --tune-budget default

    torch.set_num_threads(1)
    base, test = load_ml100k_fold(data_dir(), fold)
    rec = AutoencoderRecommender(model=model, device=device, seed=seed, tune=SelectionPlan(seed=seed, budget_s=900.0))
    out = evaluate_explicit(rec, base, test)
    sel = rec.selection_
    out["selection"] = {"chosen": sel.chosen, "blend_weight": sel.blend_weight, "model_val_rmse": sel.model_rmse,
                        "baseline_val_rmse": sel.baseline_rmse} if sel is not None else None
    stack = getattr(rec, "stack_", None)  # a stack: its weights, fitted on a held-out 5 % of uN.base
    out["stack"] = stack.to_dict() if stack is not None else None
    return fold, model, seed, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="glocalk,autorec")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=str(Path(__file__).with_name("recae_fivefold.json")))
    args = ap.parse_args()
    seeds, models = [int(s) for s in args.seeds.split(",")], args.models.split(",")
    t0 = time.perf_counter()
    jobs = [(f, m, s) for m in models for f in FOLDS for s in seeds]
    runs: dict[tuple[str, str, int], dict] = {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run, f, m, s, args.device) for f, m, s in jobs]
        for fut in futures:
            fold, model, seed, out = fut.result()
            runs[(fold, model, seed)] = out
            print(f"  {fold} {model} seed {seed}: RMSE {out['metrics']['rmse']:.4f} "
                  f"({out['train_seconds']} s)", flush=True)
    per_fold: dict[str, dict[str, dict]] = {}
    rows = []
    for fold in FOLDS:
        per_fold[fold] = {}
        for m in models:
            vals = [runs[(fold, m, s)]["metrics"]["rmse"] for s in seeds]
            per_fold[fold][m] = {"median": round(statistics.median(vals), 4), "min": min(vals), "max": max(vals),
                                 "per_seed": vals,
                                 "train_seconds": [runs[(fold, m, s)]["train_seconds"] for s in seeds],
                                 "selection": [runs[(fold, m, s)]["selection"] for s in seeds]}
        per_fold[fold]["bias"] = runs[(fold, models[0], seeds[0])]["baselines"]["bias"]["rmse"]
        rows.append([fold, *(f"{per_fold[fold][m]['median']:.4f} ({per_fold[fold][m]['min']:.4f}–"
                             f"{per_fold[fold][m]['max']:.4f})" for m in models), f"{per_fold[fold]['bias']:.4f}"])
    mean = {m: round(statistics.mean(per_fold[f][m]["median"] for f in FOLDS), 4) for m in models}
    mean["bias"] = round(statistics.mean(per_fold[f]["bias"] for f in FOLDS), 4)
    rows.append(["mean", *(f"{mean[m]:.4f}" for m in models), f"{mean['bias']:.4f}"])
    doc = {"protocol": __doc__.split("Usage:")[0].strip(), "seeds": seeds, "device": args.device,
           "per_fold": per_fold, "five_fold_mean": mean, "seconds": round(time.perf_counter() - t0, 1)}
    table(f"ML-100K u1..u5, settings chosen inside each fold's base (--tune), test RMSE, median over seeds "
          f"{args.seeds} (min–max) ({doc['seconds']:.0f} s)", ["fold", *models, "bias baseline"], rows)
    atomic_write_text(args.json, json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
