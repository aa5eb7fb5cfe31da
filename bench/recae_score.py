"""Bar: `ae recae score` for all 943 ML-100K users with k=20 under 2 s, and for a generated catalogue
of 50,000 users x 10,000 items (5 M ratings) under 60 s with bounded memory (peak RSS printed).
Usage: python bench/recae_score.py"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import data_dir, table

from recae.datasets import load_ml100k
from recae.recommender import AutoencoderRecommender
from recae.scoring import score_all


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generated(n_users: int, n_items: int, n_ratings: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users + 1, n_ratings)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.6  # a long tail, as real catalogues have
    items = rng.choice(n_items, n_ratings, p=popularity / popularity.sum()) + 1
    frame = pd.DataFrame({"user": users, "item": items, "rating": rng.integers(1, 6, n_ratings).astype(float)})
    return frame.drop_duplicates(["user", "item"])


def run(name: str, frame: pd.DataFrame, model: str, tmp: Path, device: str) -> list:
    rec = AutoencoderRecommender(model=model, epochs=1, device=device).fit(frame)
    rec.save(tmp / name)
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    man = score_all(tmp / name, tmp / f"{name}.parquet", k=20, device=device)
    seconds = time.perf_counter() - t0
    return [name, model, f"{len(rec.user_map_):,} x {len(rec.item_map_):,}", f"{len(frame):,}", man.rows_out,
            seconds, rss_before, peak_rss_mb()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [run("ml-100k", load_ml100k(data_dir()), "autorec", tmp, args.device),
                run("ml-100k", load_ml100k(data_dir()), "course", tmp, args.device),
                run("generated-50k", generated(50_000, 10_000, 5_300_000), "course", tmp, args.device)]
    table("recae batch scoring, k = 20 (score_all: user batches of 1,024, Parquet out)",
          ["catalogue", "model", "users x items", "ratings", "rows out", "seconds", "peak RSS before MB",
           "peak RSS after MB"], rows)


if __name__ == "__main__":
    main()
