"""Train-and-evaluate protocols with baselines from the same run.

Explicit splits (u1…u5, ua, ub, random): RMSE, MAE and the course measure on held-out ratings,
beside the global mean and the user+item bias baseline. `users` (held-out users, strong
generalisation): Recall/NDCG@{20,50,100} from fold-in ratings, beside popularity and EASE.
A result whose metrics are NaN (nothing to measure) is refused with a UserError, never reported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from recae.baselines import EASE, BiasBaseline, GlobalMean, Popularity
from recae.datasets import ML100K_FOLDS, dataset_root, ensure_dataset, load_ml100k_fold, resolve_dataset
from recae.interactions import IdMap, Interactions, heldout_users_split, random_split, to_csr
from recae.metrics import course_rmse, evaluate_topn, mae, rmse
from recae.models import REGISTRY, get_model
from recae.recommender import AutoencoderRecommender

SPLITS = (*ML100K_FOLDS, "random", "users", "none")
TRAIN_SPLITS = (*ML100K_FOLDS, "random", "none")  # "none": train on every rating
EVALUATION_SPLITS = (*ML100K_FOLDS, "random", "users")


def check_train_split(split: str) -> None:
    """A model is trained on everything (`none`) or on the training part of an explicit split."""
    if split == "users":
        raise UserError("--split users is an evaluation protocol; use it with `ae recae evaluate`")
    if split not in TRAIN_SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(TRAIN_SPLITS)}")


def check_protocol(model: str, split: str) -> None:
    """Explicit splits measure predicted ratings, `users` measures rankings: each model fits one."""
    if split not in EVALUATION_SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(EVALUATION_SPLITS)}")
    _check_measures(model, ranking=split == "users")


def _check_measures(model: str, ranking: bool) -> None:
    implicit = get_model(model).implicit
    if ranking and not implicit:
        rankers = "/".join(name for name, spec in REGISTRY.items() if spec.implicit)
        raise UserError(f"{model} predicts ratings; evaluate it on an explicit split (u1…u5, random), "
                        f"or use {rankers} for --split users")
    if not ranking and implicit:
        raise UserError(f"{model} ranks items; evaluate it with --split users")


def split_ratings(dataset: str, split: str, data_dir: str | Path | None = None, frame: pd.DataFrame | None = None,
                  seed: int = 0, **columns: str | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(train, test) rating frames for explicit splits; `none` trains on everything. The official
    folds are ML-100K's own files; otherwise `frame`, or the dataset read with `columns` (see
    recae.datasets.resolve_dataset), is split."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = dataset_root(data_dir)
    if split in ML100K_FOLDS:
        if dataset != "ml-100k":
            raise UserError(f"split {split} exists only for ml-100k; use --split random or users")
        ensure_dataset("ml-100k", root=root)
        return load_ml100k_fold(root, split)
    frame = frame if frame is not None else resolve_dataset(dataset, root, **columns)
    if split == "random":
        return random_split(frame, 0.1, seed)
    return frame, None


def training_ratings(dataset: str, split: str = "none", data_dir: str | Path | None = None, seed: int = 0,
                     **columns: str | None) -> pd.DataFrame:
    """The ratings a model is trained on: all of the dataset's, or the training part of a split."""
    check_train_split(split)
    return split_ratings(dataset, split, data_dir, seed=seed, **columns)[0]


def evaluate_split(rec: AutoencoderRecommender, dataset: str, split: str = "u1", data_dir: str | Path | None = None,
                   seed: int = 0, **columns: str | None) -> dict[str, Any]:
    """Train `rec` and measure it on `split` of `dataset`, beside the baselines of the same run."""
    check_protocol(rec.model, split)
    if split == "users":
        return evaluate_users(rec, resolve_dataset(dataset, data_dir, **columns), seed)
    train, test = split_ratings(dataset, split, data_dir, seed=seed, **columns)
    return evaluate_explicit(rec, train, test)


def explicit_metrics(users: np.ndarray, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {"rmse": round(rmse(pred, true), 4), "mae": round(mae(pred, true), 4),
            "course_rmse": round(course_rmse(users, pred, true), 4)}


def check_finite(result: dict[str, Any]) -> dict[str, Any]:
    """Refuse (exit 2) to report a metric that is NaN or infinite: the data cannot measure it."""
    bad = [f"{who}.{k}" for who, m in [("model", result["metrics"]), *result["baselines"].items()]
           for k, v in m.items() if not np.isfinite(v)]
    if bad:
        raise UserError(f"the test data gives undefined metrics ({', '.join(bad[:4])}"
                        f"{', …' if len(bad) > 4 else ''}); use more ratings or another split")
    return result


def evaluate_explicit(rec: AutoencoderRecommender, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    _check_measures(rec.model, ranking=False)
    if test is None or not test["user"].isin(train["user"]).any():
        n = 0 if test is None else len(test)
        raise UserError(f"nothing to measure: the test part has {n} rating(s) and none is by a user seen in "
                        "training; use more ratings or another split")
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
    return check_finite({"metrics": explicit_metrics(users, pred, true),
                         "baselines": {"global_mean": explicit_metrics(users, gm.predict(ut, it), true),
                                       "bias": explicit_metrics(users, bias.predict(ut, it), true)},
                         "train_seconds": round(train_seconds, 1), "test_ratings": int(len(test))})


def evaluate_users(rec: AutoencoderRecommender, frame: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """Held-out users; the validation users pick the epoch kept (their positives are rated 5 so that
    they pass any positive threshold)."""
    _check_measures(rec.model, ranking=True)
    split = heldout_users_split(frame, seed=seed)
    t0 = time.perf_counter()
    rec.fit(split.train.assign(rating=5.0), validation=(split.val_fold_in, split.val_target))
    train_seconds = time.perf_counter() - t0
    users = IdMap(split.test_fold_in["user"])
    fold = to_csr(split.test_fold_in, users, rec.item_map_)
    target = to_csr(split.test_target, users, rec.item_map_)
    metrics = _topn(rec.score_rows(rows=fold), fold, target)
    train_csr = Interactions.from_frame(split.train, item_map=rec.item_map_).matrix
    baselines = {"popularity": _topn(Popularity().fit(train_csr).scores(fold), fold, target),
                 "ease": _topn(EASE().fit(train_csr).scores(fold), fold, target)}
    return check_finite({"metrics": metrics, "baselines": baselines, "train_seconds": round(train_seconds, 1),
                         "test_users": int(fold.shape[0])})


def _topn(scores: np.ndarray, fold: Any, target: Any) -> dict[str, float]:
    m = evaluate_topn(scores, target, ks=(20, 50, 100), seen=fold)
    keep = ("recall@20", "recall@50", "recall@100", "ndcg@20", "ndcg@50", "ndcg@100", "mrr@20", "hit@20",
            "coverage@20")
    return {k: round(m[k], 4) for k in keep}
