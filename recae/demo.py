"""The recommender's part of `ae demo`: brief training on ML-100K u1, test RMSE beside the bias
baseline, recommendations for a sample user and for a new user from three ratings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.jobs.plots import plot_loss_curves
from core.jobs.report import Section
from recae.datasets import load_items, load_ml100k_fold
from recae.evaluate import evaluate_explicit
from recae.recommender import AutoencoderRecommender

SAMPLE_USER = 196
NEW_USER = {50: 5.0, 181: 5.0, 1: 4.0}  # Star Wars, Return of the Jedi, Toy Story


def run(data_dir: Path, out: Path, device: str, seed: int, quick: bool, progress: bool) -> Section:
    train, test = load_ml100k_fold(data_dir, "u1")
    items = load_items("ml-100k", data_dir)
    section = Section("Movie recommendations (MovieLens 100K, official split u1)")
    rows, histories, best = [], {}, None
    for model, epochs in (("course", 20 if quick else 200), ("autorec", 5 if quick else 20)):
        rec = AutoencoderRecommender(model=model, epochs=epochs, device=device, seed=seed, progress=progress)
        result = evaluate_explicit(rec, train, test)
        m, b = result["metrics"], result["baselines"]["bias"]
        rows.append([model, epochs, m["rmse"], m["mae"], m["course_rmse"], b["rmse"], result["train_seconds"]])
        histories[model] = rec.history_
        best = rec
    section.table(pd.DataFrame(rows, columns=["model", "epochs", "test RMSE", "test MAE", "course RMSE",
                                              "bias baseline RMSE", "train s"]),
                  caption="Rating prediction on u1.test (20,000 ratings), baseline from the same run")
    section.image(plot_loss_curves(histories, out / "recae_loss.png", title="recommender training loss"),
                  "training loss")
    shown = {"score": "predicted rating"}  # the explicit models' score is a predicted rating
    top = best.recommend(SAMPLE_USER, 10).merge(items[["item", "title"]], on="item", how="left")
    section.table(top[["rank", "title", "score"]].rename(columns=shown),
                  caption=f"Top 10 unseen movies for user {SAMPLE_USER}")
    names = items.set_index("item")["title"]
    given = ", ".join(f"{names[i]} = {r:g}" for i, r in NEW_USER.items())
    fold = best.fold_in(NEW_USER, 10).merge(items[["item", "title"]], on="item", how="left")
    section.table(fold[["rank", "title", "score"]].rename(columns=shown),
                  caption=f"A new user who rated {given} (fold-in, no retraining)")
    return section
