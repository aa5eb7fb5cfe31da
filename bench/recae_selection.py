"""Settings chosen on the training ratings (recae.selection) against the bias baseline.

On a random 90/10 split of ML-100K (and of any MovieLens-like ratings file given with --ratings:
CSV/Parquet with user, item, rating columns, e.g. ml-latest-small's ratings.csv with
--user-col userId --item-col movieId), train each explicit model as `ae recae train` does (the
search on a seeded 10 % of each user's training ratings, refit on all 90 %), and report the
validation RMSE of the chosen setting, the RMSE of what ships on the untouched 10 % test ratings,
and the bias baseline on both, in a markdown table. The untuned recipe (--no-tune) is shown beside.

Usage: python bench/recae_selection.py [--models autorec] [--ratings FILE [--user-col userId ...]]
       [--device cpu] [--no-recipe]
"""

from __future__ import annotations

import argparse
import time

from _common import data_dir, table

from recae.datasets import load_ml100k, load_ratings_file
from recae.evaluate import evaluate_explicit
from recae.interactions import random_split
from recae.models import get_model
from recae.recommender import AutoencoderRecommender
from recae.selection import SelectionPlan


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()) or "recipe"


def run(name: str, frame, args: argparse.Namespace) -> list[list]:  # noqa: ANN001
    train, test = random_split(frame, 0.1, seed=args.seed)
    rows = []
    for model in args.models.split(","):
        if get_model(model).implicit:
            raise SystemExit(f"{model} is a top-N model; this bench measures rating prediction")
        if args.recipe:
            t0 = time.perf_counter()
            r = evaluate_explicit(AutoencoderRecommender(model=model, device=args.device, seed=args.seed), train, test)
            rows.append([name, f"{model} (recipe, untuned)", "", "", "", r["metrics"]["rmse"],
                         r["baselines"]["bias"]["rmse"], round(time.perf_counter() - t0, 1)])
        t0 = time.perf_counter()
        rec = AutoencoderRecommender(model=model, device=args.device, seed=args.seed,
                                     tune=SelectionPlan(seed=args.seed, budget_s=args.budget))
        r = evaluate_explicit(rec, train, test)
        sel = rec.selection_
        rows.append([name, f"{model} (tuned)", f"{_settings(sel.chosen)}; α={sel.blend_weight:g}", sel.blended_rmse,
                     sel.baseline_rmse, r["metrics"]["rmse"], r["baselines"]["bias"]["rmse"],
                     round(time.perf_counter() - t0, 1)])
        print(f"{name} {model}: " + " | ".join(sel.describe()), flush=True)
    return rows


def synthetic(seed: int = 0):  # noqa: ANN201
    """A MovieLens-latest-small-shaped stand-in (610 users, ~9.7k items drawn Zipf-like so that many
    have one rating, half stars 0.5-5): user and item biases, rank-8 tastes and noise."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_users, n_items, rank = 610, 9700, 8
    activity = rng.pareto(1.2, n_users) + 1.0
    per_user = np.clip(activity / activity.sum() * 100_000, 20, 2500).astype(int)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop = pop[rng.permutation(n_items)] / pop.sum()
    bu, bi = rng.normal(0, 0.45, n_users), rng.normal(0, 0.5, n_items)
    p, q = rng.normal(0, 1, (n_users, rank)), rng.normal(0, 1, (n_items, rank))
    parts = []
    for u in range(n_users):
        items = rng.choice(n_items, per_user[u], replace=False, p=pop)
        r = 3.5 + bu[u] + bi[items] + 0.6 * (q[items] @ p[u]) / np.sqrt(rank) + rng.normal(0, 0.7, len(items))
        parts.append(pd.DataFrame({"user": u + 1, "item": items + 1, "rating": np.clip(np.round(r * 2) / 2, 0.5, 5)}))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="autorec")
    ap.add_argument("--ratings", default=None, help="a MovieLens-like ratings file (CSV/Parquet)")
    ap.add_argument("--user-col", default="user")
    ap.add_argument("--item-col", default="item")
    ap.add_argument("--rating-col", default="rating")
    ap.add_argument("--skip-ml100k", action="store_true")
    ap.add_argument("--synthetic", action="store_true", help="also a generated ml-latest-small-shaped set")
    ap.add_argument("--no-recipe", dest="recipe", action="store_false", help="skip the untuned recipe rows")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds for each search")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    if not args.skip_ml100k:
        rows += run("ml-100k", load_ml100k(data_dir()), args)
    if args.ratings:
        frame = load_ratings_file(args.ratings, args.user_col, args.item_col, args.rating_col)
        rows += run(args.ratings.rsplit("/", 1)[-1], frame, args)
    if args.synthetic:
        frame = synthetic(args.seed)
        print(f"synthetic: {len(frame)} ratings, {frame['user'].nunique()} users, {frame['item'].nunique()} items, "
              f"{int((frame.groupby('item').size() == 1).sum())} rated once", flush=True)
        rows += run("synthetic ml-latest-small shape", frame, args)
    table("Settings chosen on validation (10 % of each user's training ratings), random 90/10 split, "
          f"seed {args.seed}: RMSE beside the user+item bias baseline",
          ["data", "model", "chosen (blend α)", "val RMSE (shipped)", "val RMSE bias", "test RMSE", "test RMSE bias",
           "seconds"], rows)


if __name__ == "__main__":
    main()
