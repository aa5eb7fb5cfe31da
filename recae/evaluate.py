"""Train-and-evaluate protocols with baselines from the same run.

Explicit splits (u1…u5, ua, ub, random): RMSE, MAE and the course measure on held-out ratings,
beside the global mean and the user+item bias baseline. Top-N (strong generalisation,
Recall/NDCG@{20,50,100} from fold-in ratings, beside popularity, EASE, ItemKNN and RP3beta, each
tuned on the validation users as the autoencoders are): `users` is the quick single split (100
validation, 100 test users), `folds` the 5-fold user protocol of recae.protocol (every user with
5+ positives tested once, mean ± std over folds and a paired test of the best autoencoder against
the best baseline). `evaluate_all` runs every model of a protocol's kind (`--model all`) and the
baselines as one table. A result whose metrics are NaN (nothing to measure) is refused with a
UserError, never reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from recae.baselines import BiasBaseline, GlobalMean
from recae.datasets import ML100K_FOLDS, dataset_root, ensure_dataset, load_ml100k_fold, resolve_dataset
from recae.interactions import IdMap, heldout_users_split, random_split
from recae.metrics import course_rmse, mae, rmse
from recae.models import REGISTRY, get_model
from recae.protocol import ProtocolResult, run_protocol, user_folds
from recae.recommender import AutoencoderRecommender

log = logging.getLogger(__name__)

TOPN_SPLITS = ("users", "folds")  # held-out users: one split, or 5 user folds
SPLITS = (*ML100K_FOLDS, "random", *TOPN_SPLITS, "none")
TRAIN_SPLITS = (*ML100K_FOLDS, "random", "none")  # "none": train on every rating
EVALUATION_SPLITS = (*ML100K_FOLDS, "random", *TOPN_SPLITS)
ALL = "all"  # --model all: every model of the split's kind, in registry order


def check_train_split(split: str) -> None:
    """A model is trained on everything (`none`) or on the training part of an explicit split."""
    if split in TOPN_SPLITS:
        raise UserError(f"--split {split} is an evaluation protocol; use it with `ae recae evaluate`")
    if split not in TRAIN_SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(TRAIN_SPLITS)}")


def check_protocol(model: str, split: str) -> None:
    """Explicit splits measure predicted ratings, `users`/`folds` measure rankings: each model fits one."""
    if split not in EVALUATION_SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(EVALUATION_SPLITS)}")
    if model != ALL:
        _check_measures(model, ranking=split in TOPN_SPLITS)


def models_for(model: str, split: str) -> list[str]:
    """The models `--model` names on `split`: one, or with `all` every registered model that the
    split can measure (the implicit ones for top-N splits, the explicit ones otherwise)."""
    check_protocol(model, split)
    if model != ALL:
        return [model]
    ranking = split in TOPN_SPLITS
    return [name for name, spec in REGISTRY.items() if spec.implicit == ranking]


def _check_measures(model: str, ranking: bool) -> None:
    implicit = get_model(model).implicit
    if ranking and not implicit:
        rankers = "/".join(name for name, spec in REGISTRY.items() if spec.implicit)
        raise UserError(f"{model} predicts ratings; evaluate it on an explicit split (u1…u5, random), "
                        f"or use {rankers} (or all) for --split users/folds")
    if not ranking and implicit:
        raise UserError(f"{model} ranks items; evaluate it with --split users or folds")


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
    if split in TOPN_SPLITS:
        if split == "folds":
            raise UserError("--split folds reports every model of a table; use evaluate_all")
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
    """Held-out users (one split): the validation users pick the epoch kept and each baseline's
    setting (recae.protocol); the model beside the tuned baselines, and the tuning record."""
    _check_measures(rec.model, ranking=True)
    split = heldout_users_split(frame, seed=seed)
    result = run_protocol([split], [rec.model], lambda _name: rec)
    doc = result.to_dict()
    metrics = doc["results"].pop(rec.model)
    return check_finite({"metrics": metrics, "baselines": doc["results"], "tuning": doc["tuning"],
                         "train_seconds": doc["seconds"][rec.model], "test_users": doc["test_users"]})


def topn_protocol(frame: pd.DataFrame, split: str, models: list[str], make_rec: Callable[[str], Any],
                  seed: int = 0, baselines: tuple[str, ...] | None = None) -> ProtocolResult:
    """`users` (one split, seeded) or `folds` (recae.protocol.user_folds) with `models` and baselines."""
    splits = [heldout_users_split(frame, seed=seed)] if split == "users" else user_folds(frame, seed=seed)
    kw = {} if baselines is None else {"baselines": baselines}
    return run_protocol(splits, models, make_rec, **kw)


def evaluate_all(dataset: str, split: str, model: str, make_rec: Callable[[str], Any],
                 data_dir: str | Path | None = None, seed: int = 0, **columns: str | None) -> dict[str, Any]:
    """One table: `model` (or every model of the split's kind with `all`) beside the baselines.

    Top-N splits return `results` ({name: {metric: value}}, or {metric: {"mean", "std"}} over
    folds), `tuning` (grid, setting chosen per fold, validation scores) and `paired` (best
    autoencoder vs best baseline, per user); explicit splits return `results` and the seconds each
    model trained."""
    models = models_for(model, split)
    if split in TOPN_SPLITS:
        result = topn_protocol(resolve_dataset(dataset, data_dir, **columns), split, models, make_rec, seed)
        doc = result.to_dict()
        _check_results(doc["results"])
        return {"protocol": _protocol_note(split, seed, result.folds), **doc}
    train, test = split_ratings(dataset, split, data_dir, seed=seed, **columns)
    results: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    baselines: dict[str, dict[str, float]] = {}
    for name in models:
        log.info("training %s on %s", name, split)
        r = evaluate_explicit(make_rec(name), train, test)
        results[name], seconds[name], baselines = r["metrics"], r["train_seconds"], r["baselines"]
        n_test = r["test_ratings"]
    return {"results": {**results, **baselines}, "seconds": seconds, "test_ratings": n_test}


def _protocol_note(split: str, seed: int, folds: int) -> dict[str, Any]:
    rule = ("ratings >= 4 are positives; users with 5+ positives shuffled (seed) into 5 folds, each fold the "
            "test users once; 100 validation users (a quarter if fewer than 400) from the other folds; "
            "80/20 fold-in/target per user"
            if split == "folds" else
            "ratings >= 4 are positives; 100 validation and 100 test users (seed); 80/20 fold-in/target per user")
    return {"split": split, "folds": folds, "seed": seed, "rule": rule, "tuned_on": "validation users, ndcg@100",
            "aggregate": "mean and std (ddof=1) over folds" if folds > 1 else "one split"}


def _check_results(results: dict[str, dict[str, Any]]) -> None:
    values = {f"{who}.{k}": (v["mean"] if isinstance(v, dict) else v) for who, m in results.items()
              for k, v in m.items()}
    bad = [k for k, v in values.items() if not np.isfinite(v)]
    if bad:
        raise UserError(f"the test data gives undefined metrics ({', '.join(bad[:4])}"
                        f"{', …' if len(bad) > 4 else ''}); use more ratings or another split")
