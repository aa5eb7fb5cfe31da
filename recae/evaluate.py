"""Train-and-evaluate protocols with baselines from the same run.

Explicit splits (u1…u5, ua, ub, random): RMSE, MAE and the course measure on held-out ratings,
beside the global mean and the user+item bias baseline. `users` (held-out users, strong
generalisation): Recall/NDCG@{20,50,100} from fold-in ratings, beside popularity and EASE.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from recae.baselines import EASE, BiasBaseline, GlobalMean, Popularity
from recae.datasets import ML100K_FOLDS, load_ml100k_fold, resolve_dataset
from recae.interactions import IdMap, Interactions, heldout_users_split, random_split, to_csr
from recae.metrics import course_rmse, evaluate_topn, mae, rmse
from recae.recommender import AutoencoderRecommender

SPLITS = (*ML100K_FOLDS, "random", "users", "none")


def split_ratings(dataset: str, split: str, data_dir: Path, frame: pd.DataFrame | None = None,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(train, test) rating frames for explicit splits; `none` trains on everything."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split in ML100K_FOLDS:
        if dataset != "ml-100k":
            raise UserError(f"split {split} exists only for ml-100k; use --split random or users")
        return load_ml100k_fold(data_dir, split)
    frame = frame if frame is not None else resolve_dataset(dataset, data_dir)
    if split == "random":
        return random_split(frame, 0.1, seed)
    return frame, None


def explicit_metrics(users: np.ndarray, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {"rmse": round(rmse(pred, true), 4), "mae": round(mae(pred, true), 4),
            "course_rmse": round(course_rmse(users, pred, true), 4)}


def evaluate_explicit(rec: AutoencoderRecommender, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    t0 = time.perf_counter()
    rec.fit(train)
    train_seconds = time.perf_counter() - t0
    known = test["user"].isin(rec.user_map_.raw)
    test = test[known]
    pred = rec.predict(test["user"].to_numpy(), test["item"].to_numpy())
    users, true = test["user"].to_numpy(), test["rating"].to_numpy()
    umap, imap = IdMap(train["user"]), IdMap(train["item"])
    u, i = umap.index_array(train["user"].to_numpy()), imap.index_array(train["item"].to_numpy())
    ut, it = umap.index_array(users), imap.index_array(test["item"].to_numpy())
    bias = BiasBaseline().fit(u, i, train["rating"].to_numpy(), len(umap), len(imap))
    gm = GlobalMean().fit(u, i, train["rating"].to_numpy())
    return {"metrics": explicit_metrics(users, pred, true),
            "baselines": {"global_mean": explicit_metrics(users, gm.predict(ut, it), true),
                          "bias": explicit_metrics(users, bias.predict(ut, it), true)},
            "train_seconds": round(train_seconds, 1), "test_ratings": int(len(test))}


def evaluate_users(rec: AutoencoderRecommender, frame: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    split = heldout_users_split(frame, seed=seed)
    t0 = time.perf_counter()
    validation = (split.val_fold_in, split.val_target) if rec.implicit else None
    rec.fit(split.train.assign(rating=5.0) if rec.implicit else split.train, validation=validation)
    train_seconds = time.perf_counter() - t0
    users = IdMap(split.test_fold_in["user"])
    fold = to_csr(split.test_fold_in, users, rec.item_map_)
    target = to_csr(split.test_target, users, rec.item_map_)
    metrics = _topn(rec.score_rows(rows=fold), fold, target)
    train_csr = Interactions.from_frame(split.train, item_map=rec.item_map_).matrix
    baselines = {"popularity": _topn(Popularity().fit(train_csr).scores(fold), fold, target),
                 "ease": _topn(EASE().fit(train_csr).scores(fold), fold, target)}
    return {"metrics": metrics, "baselines": baselines, "train_seconds": round(train_seconds, 1),
            "test_users": int(fold.shape[0])}


def _topn(scores: np.ndarray, fold: Any, target: Any) -> dict[str, float]:
    m = evaluate_topn(scores, target, ks=(20, 50, 100), seen=fold)
    keep = ("recall@20", "recall@50", "recall@100", "ndcg@20", "ndcg@50", "ndcg@100", "mrr@20", "hit@20",
            "coverage@20")
    return {k: round(m[k], 4) for k in keep}
