"""Bar: top-N on ML-100K held-out users (ratings >= 4 positives, 100 validation and 100 test users,
seed 0): multvae NDCG@100 >= 2x popularity's and within 5 % of EASE, all in the same run. The
autoencoders keep the epoch with the best NDCG@100 on the validation users (never the test users).
Usage: python bench/recae_topn.py"""

from __future__ import annotations

import argparse

from _common import data_dir, table

from recae.datasets import load_ml100k
from recae.evaluate import evaluate_users
from recae.recommender import AutoencoderRecommender


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    frame = load_ml100k(data_dir())
    results, kept = {}, {}
    for m in ("multvae", "multdae"):
        rec = AutoencoderRecommender(model=m, device=args.device)
        results[m] = evaluate_users(rec, frame, seed=0)
        kept[m] = (rec.history_.best_epoch + 1, -min(rec.history_.val_loss))
    keys = ["recall@20", "recall@50", "ndcg@100"]
    rows = [[m, *[r["metrics"][k] for k in keys], kept[m][1], kept[m][0], r["train_seconds"]]
            for m, r in results.items()]
    for name, m in results["multvae"]["baselines"].items():
        rows.append([name, *[m[k] for k in keys], "", "", ""])
    table("recae top-N, ML-100K held-out users (100 test users, seed 0)",
          ["model", *keys, "validation ndcg@100", "epoch kept", "train s"], rows)
    vae = results["multvae"]["metrics"]["ndcg@100"]
    pop = results["multvae"]["baselines"]["popularity"]["ndcg@100"]
    ease = results["multvae"]["baselines"]["ease"]["ndcg@100"]
    print(f"bar: multvae/popularity NDCG@100 = {vae / pop:.2f}x (>= 2x needed); "
          f"multvae vs EASE = {100 * (vae / ease - 1):+.1f}% (>= -5% needed)")


if __name__ == "__main__":
    main()
