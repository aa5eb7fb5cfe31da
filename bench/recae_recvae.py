"""RecVAE against Mult-VAE and EASE on ML-100K held-out users (the `ae recae evaluate --split users`
protocol: ratings >= 4 positives, 100 validation and 100 test users per seed, 80/20 fold-in/target).

1. Settings (hidden width, latent size, γ) are chosen on the validation users of the seed-0 split
   only: every grid point trains with that split's validation users and keeps its best validation
   NDCG@100 epoch; the best validation NDCG@100 wins. The test users are never looked at.
2. The chosen setting, multvae and the tuned baselines then run the same protocol for each seed;
   the table gives the median over seeds and the spread (min–max), and the ratio to EASE (the
   median of the per-seed ratios of NDCG@100).

Usage: AE_DATA_DIR=../shared/data python bench/recae_recvae.py [--grid none] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from _common import data_dir, median, table

from recae.datasets import load_ml100k
from recae.evaluate import topn_protocol
from recae.interactions import heldout_users_split
from recae.models import get_model, recvae_model, register
from recae.recommender import AutoencoderRecommender

GRIDS = {  # (hidden, latent, gamma)
    "small": list(itertools.product((300, 600), (64, 200), (0.005, 0.01))),
    "none": [],
}
KEYS = ("ndcg@100", "recall@20", "recall@50")


def variant(hidden: int, latent: int, gamma: float, max_epochs: int) -> str:
    name = f"recvae-h{hidden}-l{latent}-g{gamma:g}-e{max_epochs}"
    try:
        get_model(name)
    except Exception:  # noqa: BLE001 - not registered yet
        register(recvae_model(name=name, hidden=hidden, latent=latent, gamma=gamma, max_epochs=max_epochs))
    return name


def choose(frame, grid, seed: int, device: str, max_epochs: int) -> str:  # noqa: ANN001
    """Train every grid point with the seed's validation users; the best validation NDCG@100 wins."""
    split = heldout_users_split(frame, seed=seed)
    rows, best, best_val = [], "recvae", -1.0
    for hidden, latent, gamma in grid:
        name = variant(hidden, latent, gamma, max_epochs)
        rec = AutoencoderRecommender(model=name, device=device, seed=seed)
        t0 = time.perf_counter()
        rec.fit(split.train.assign(rating=5.0), validation=(split.val_fold_in, split.val_target))
        val = -min(rec.history_.val_loss)
        rows.append([hidden, latent, gamma, val, rec.history_.best_epoch + 1, round(time.perf_counter() - t0, 1)])
        if val > best_val:
            best, best_val = name, val
    if rows:
        table(f"RecVAE settings on the seed-{seed} validation users (max {max_epochs} epochs, best epoch kept)",
              ["hidden", "latent", "gamma", "validation ndcg@100", "epoch kept", "train s"], rows)
        print(f"chosen: {best} (validation ndcg@100 {best_val:.4f})\n", flush=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grid", choices=tuple(GRIDS), default="small")
    ap.add_argument("--grid-seed", type=int, default=0)
    ap.add_argument("--max-epochs", type=int, default=get_model("recvae").recipe.max_epochs_with_validation)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    frame = load_ml100k(data_dir())
    chosen = choose(frame, GRIDS[args.grid], args.grid_seed, args.device, args.max_epochs)
    models = [chosen, "multvae"]
    per_seed: dict[str, list[dict[str, float]]] = {m: [] for m in (*models, "ease")}
    kept: dict[str, list[int]] = {m: [] for m in models}
    for seed in args.seeds:
        result = topn_protocol(frame, "users", models,
                               lambda name, s=seed: AutoencoderRecommender(model=name, device=args.device, seed=s),
                               seed=seed, baselines=("popularity", "ease"))
        doc = result.to_dict()
        for m in per_seed:
            per_seed[m].append(doc["results"][m])
        for m in models:
            kept[m].append(doc["tuning"][m]["chosen"][0]["epochs"])
        print(f"seed {seed}: " + ", ".join(f"{m} ndcg@100 {doc['results'][m]['ndcg@100']:.4f}" for m in per_seed)
              + f"; seconds {doc['seconds']}", flush=True)

    def cell(m: str, k: str) -> str:
        vals = [r[k] for r in per_seed[m]]
        return f"{median(vals):.4f} ({min(vals):.4f}–{max(vals):.4f})"

    rows = []
    for m in per_seed:
        ratios = [r["ndcg@100"] / e["ndcg@100"] for r, e in zip(per_seed[m], per_seed["ease"])]
        epochs = f"{median(kept[m]):g}" if m in kept else "-"
        rows.append([m, *[cell(m, k) for k in KEYS], f"{median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})",
                     epochs])
    table(f"ML-100K held-out users, seeds {' '.join(map(str, args.seeds))}: median (min–max) over seeds",
          ["model", *(k.replace("ndcg", "NDCG").replace("recall", "Recall") for k in KEYS),
           "NDCG@100 / EASE", "epoch kept (median)"], rows)


if __name__ == "__main__":
    main()
