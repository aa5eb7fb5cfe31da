"""New users, measured: how good are a new user's recommendations after 1, 3, 5 or 10 ratings?

Protocol (fixed before any result was seen): ML-100K's 5 user folds of recae.protocol.user_folds
(split seed 0). On each fold the models train on the fold's training users (all their ratings; the
implicit models keep their best epoch on the fold's validation users, as in the `folds` protocol)
and never see the test users. Each test user's ratings on training items are shuffled once
(default_rng((0, user))); the first n (n = 1, 3, 5, 10) are what the new user gives (fold-in), and
everything after the first 10 is the target, the same target for every n, so the rows differ only
in how much the user said. Pooled over the folds every eligible user (5+ positives) is tested once.

- Rating prediction: RMSE on the target ratings. The explicit autoencoders fold the user in
  (AutoencoderRecommender.score_rows(rows=...)) beside the bias baseline given the same n ratings
  (global mean + item bias from training + the user's bias from the n ratings, shrunk by the
  baseline's own reg_user) and the item-bias baseline that ignores them (n = 0).
- Top-N: NDCG@20 and Recall@20 of the target's positives (rating ≥ 4) over the items with a positive
  in training, the first 10 shuffled ratings excluded from the ranking for every n (`--exclude
  known`, the default since session 12). The earlier runs excluded only the n given items
  (`--exclude given`, bench/recae_foldin_given.json): there a user's ratings n+1..10, neither given nor
  target, were ranked as misses, and the candidate set changed with n, against the rows differing
  only in how much the user said. Fixed on that design ground, before any run of it. The implicit autoencoders fold in
  the given positives (if none of the n is a positive, all n, as `fold_in` does) beside popularity
  and EASE (λ tuned on the fold's validation users, recae.protocol.tune).

Autoencoders are trained with each of --seeds (median over seeds of the pooled metric, with the
seeds' range); the baselines are deterministic. (fold, seed) runs are independent and run in
--jobs processes.
Usage: python bench/recae_foldin.py [--seeds 0,1,2] [--device cpu] [--jobs 1] [--folds 0,1,2,3,4]"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from _common import data_dir, table

from core.jobs.atomic import atomic_write_text
from recae.baselines import EASE, TOPN_BASELINES, BiasBaseline, Popularity
from recae.datasets import load_ml100k
from recae.interactions import IdMap, to_csr
from recae.metrics import topn_per_user
from recae.models import get_model
from recae.protocol import FoldData, tune, user_folds

GIVEN = (1, 3, 5, 10)
MODELS = "autorec,multvae,recvae"
POSITIVE = 4.0


def new_users(frame: pd.DataFrame, users: np.ndarray, items: IdMap) -> dict[int, pd.DataFrame]:
    """Each test user's ratings on training items, in the shuffled order that decides what is given."""
    out = {}
    known = frame[frame["user"].isin(set(users.tolist())) & frame["item"].isin(set(items.raw.tolist()))]
    for user, g in known.groupby("user", sort=True):
        if len(g) > max(GIVEN):
            order = np.random.default_rng((0, int(user))).permutation(len(g))
            out[int(user)] = g.iloc[order].reset_index(drop=True)
    return out


def rows(parts: list[pd.DataFrame], items: IdMap, implicit: bool) -> sp.csr_matrix:
    """One csr row per user; implicit rows hold the positives (all given items if none is one)."""
    frames, known = [], set(items.raw.tolist())
    for r, part in enumerate(parts):
        part = part[part["item"].isin(known)]
        if implicit:
            pos = part[part["rating"] >= POSITIVE]
            part = (pos if len(pos) else part).assign(rating=1.0)
        frames.append(part.assign(user=r))
    frame = pd.concat(frames, ignore_index=True)
    return to_csr(frame, IdMap(np.arange(len(parts))), items)


def topn(scores: np.ndarray, excluded: list[pd.DataFrame], target: list[pd.DataFrame], items: IdMap) -> np.ndarray:
    """Per-user NDCG@20 and Recall@20 (users without target positives give NaN), `excluded` (each
    user's ratings left out of the ranking) never ranked."""
    seen = rows(excluded, items, implicit=False)
    tgt = rows([t[t["rating"] >= POSITIVE] for t in target], items, implicit=False)
    out = np.full((len(target), 2), np.nan)
    per_user, has, _ = topn_per_user(scores, tgt, (20,), seen=seen)
    out[has, 0], out[has, 1] = per_user["ndcg@20"], per_user["recall@20"]
    return out


def sq_errors(pred: np.ndarray, target: list[pd.DataFrame], items: IdMap) -> np.ndarray:
    """Per-user sum of squared errors and count on the target ratings (items known to the model)."""
    out = np.zeros((len(target), 2))
    for r, t in enumerate(target):
        idx = items.index_array(t["item"].to_numpy())
        ok = idx >= 0
        out[r] = (((pred[r, idx[ok]] - t["rating"].to_numpy()[ok]) ** 2).sum(), ok.sum())
    return out


def fold_setup(frame: pd.DataFrame, split) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:  # noqa: ANN001
    train_users = set(split.train["user"])
    train = frame[frame["user"].isin(train_users)].reset_index(drop=True)
    test_users = np.unique(split.test_fold_in["user"].to_numpy())
    return train, new_users(frame, test_users, IdMap(train["item"]))


def run_models(fold: int, seed: int, device: str, models: list[str], exclude: str = "known") -> dict:
    """Train every autoencoder on one fold with one seed; per-user errors for every n."""
    import torch

    from recae.recommender import AutoencoderRecommender

    torch.set_num_threads(2)
    frame = load_ml100k(data_dir())
    split = user_folds(frame, seed=0)[fold]
    train, users = fold_setup(frame, split)
    ordered = list(users.values())
    target = [u.iloc[max(GIVEN):] for u in ordered]
    known = [u.iloc[:max(GIVEN)] for u in ordered]
    out: dict = {"users": list(users), "rmse": {}, "topn": {}, "seconds": {}}
    for name in models:
        t0 = time.perf_counter()
        rec = AutoencoderRecommender(model=name, device=device, seed=seed)
        if rec.implicit:
            rec.fit(train, validation=(split.val_fold_in, split.val_target))
        else:
            rec.fit(train)
        out["seconds"][name] = time.perf_counter() - t0
        for n in GIVEN:
            given = [u.iloc[:n] for u in ordered]
            scores = rec.score_rows(rows=rows(given, rec.item_map_, implicit=rec.implicit))
            if rec.implicit:
                out["topn"][(name, n)] = topn(_on(scores, rec.item_map_, split), known if exclude == "known"
                                              else given, target, IdMap(split.train["item"]))
            else:
                out["rmse"][(name, n)] = sq_errors(np.clip(scores, *rec.scale_), target, rec.item_map_)
    return out


def _on(scores: np.ndarray, items: IdMap, split) -> np.ndarray:  # noqa: ANN001
    """Scores over the fold's candidate items (those with a positive in training)."""
    cand = IdMap(split.train["item"])
    idx = items.index_array(cand.raw)
    return np.where(idx >= 0, scores[:, np.clip(idx, 0, None)], -np.inf)


def run_baselines(frame: pd.DataFrame, fold: int, exclude: str = "known") -> dict:
    split = user_folds(frame, seed=0)[fold]
    train, users = fold_setup(frame, split)
    ordered = list(users.values())
    target = [u.iloc[max(GIVEN):] for u in ordered]
    known = [u.iloc[:max(GIVEN)] for u in ordered]
    umap, imap = IdMap(train["user"]), IdMap(train["item"])
    bias = BiasBaseline().fit(umap.index_array(train["user"].to_numpy()), imap.index_array(train["item"].to_numpy()),
                              train["rating"].to_numpy(), len(umap), len(imap))
    data = FoldData.from_split(split)
    ease_setting, _ = tune(TOPN_BASELINES["ease"], data)
    ease = EASE(**ease_setting).fit(data.train)
    pop = Popularity().fit(data.train)
    out: dict = {"users": list(users), "rmse": {}, "topn": {}, "ease": ease_setting}
    base = np.clip(bias.mu_ + bias.bi_, bias.lo_, bias.hi_)
    out["rmse"][("item bias (ignores the n ratings)", 0)] = sq_errors(np.tile(base, (len(ordered), 1)), target, imap)
    for n in GIVEN:
        given = [u.iloc[:n] for u in ordered]
        bu = np.array([((g["rating"].to_numpy() - bias.mu_ - bias.bi_[imap.index_array(g["item"].to_numpy())]).sum()
                        / (len(g) + bias.reg_user)) for g in given])
        pred = np.clip(bias.mu_ + bias.bi_[None, :] + bu[:, None], bias.lo_, bias.hi_)
        out["rmse"][("bias", n)] = sq_errors(pred, target, imap)
        fold_rows = rows(given, data.item_map, implicit=True)
        excluded = known if exclude == "known" else given
        out["topn"][("popularity", n)] = topn(pop.scores(fold_rows), excluded, target, data.item_map)
        out["topn"][("ease", n)] = topn(ease.scores(fold_rows), excluded, target, data.item_map)
    return out


def pooled_rmse(parts: list[np.ndarray]) -> float:
    s = np.concatenate(parts)
    return float(np.sqrt(s[:, 0].sum() / s[:, 1].sum()))


def pooled_topn(parts: list[np.ndarray]) -> tuple[float, float]:
    s = np.concatenate(parts)
    return float(np.nanmean(s[:, 0])), float(np.nanmean(s[:, 1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--exclude", choices=("known", "given"), default="known",
                    help="left out of the ranking: the first 10 ratings (known) or the n given (given, the first runs)")
    ap.add_argument("--json", default=str(Path(__file__).with_name("recae_foldin.json")))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    explicit = [m for m in models if not get_model(m).implicit]
    implicit = [m for m in models if get_model(m).implicit]
    folds = [int(f) for f in args.folds.split(",")]
    t0 = time.perf_counter()
    frame = load_ml100k(data_dir())
    tasks = [(f, s) for s in seeds for f in folds]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {t: pool.submit(run_models, *t, args.device, models, args.exclude) for t in tasks}
        base = {f: run_baselines(frame, f, args.exclude) for f in folds}
        runs = {t: fut.result() for t, fut in futures.items()}
    print(f"all runs done ({time.perf_counter() - t0:.0f} s)", flush=True)

    n_users = sum(len(base[f]["users"]) for f in folds)
    doc: dict = {"protocol": __doc__.split("Autoencoders are")[0].strip(), "seeds": seeds, "folds": folds,
                 "test_users": n_users, "ease_chosen": {str(f): base[f]["ease"] for f in folds},
                 "exclude": args.exclude, "rmse": {}, "ndcg@20": {}, "recall@20": {}}
    rmse_rows, topn_rows = [], []
    for (name, n) in base[folds[0]]["rmse"]:
        v = pooled_rmse([base[f]["rmse"][(name, n)] for f in folds])
        doc["rmse"][f"{name} n={n}"] = v
    for name in explicit:
        for n in GIVEN:
            vals = [pooled_rmse([runs[(f, s)]["rmse"][(name, n)] for f in folds]) for s in seeds]
            doc["rmse"][f"{name} n={n}"] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    for n in GIVEN:
        row = [n, f"{doc['rmse'][f'bias n={n}']:.4f}"]
        for name in explicit:
            d = doc["rmse"][f"{name} n={n}"]
            row.append(f"{d['median']:.4f} ({d['min']:.4f}–{d['max']:.4f})")
        rmse_rows.append(row)
    item_only = doc["rmse"]["item bias (ignores the n ratings) n=0"]
    table(f"new users: RMSE on the target ratings after n ratings ({n_users} test users over {len(folds)} folds; "
          f"item bias alone, n = 0: {item_only:.4f}); autoencoders: median over seeds {args.seeds} (range)",
          ["n given", "bias baseline", *explicit], rmse_rows)
    for n in GIVEN:
        row = [n]
        pop, _ = pooled_topn([base[f]["topn"][("popularity", n)] for f in folds])
        ease, _ = pooled_topn([base[f]["topn"][("ease", n)] for f in folds])
        doc["ndcg@20"][f"popularity n={n}"], doc["ndcg@20"][f"ease n={n}"] = pop, ease
        row += [f"{pop:.4f}", f"{ease:.4f}"]
        for name in implicit:
            vals = [pooled_topn([runs[(f, s)]["topn"][(name, n)] for f in folds])[0] for s in seeds]
            med = statistics.median(vals)
            doc["ndcg@20"][f"{name} n={n}"] = {"median": med, "min": min(vals), "max": max(vals)}
            row.append(f"{med:.4f} ({min(vals):.4f}–{max(vals):.4f}), {med / pop:.2f}× pop")
        topn_rows.append(row)
    table(f"new users: NDCG@20 of the target positives after n ratings ({n_users} test users over {len(folds)} "
          f"folds); autoencoders: median over seeds {args.seeds} (range), ratio to popularity",
          ["n given", "popularity", "EASE (λ tuned)", *implicit], topn_rows)
    secs = {name: statistics.median(r["seconds"][name] for r in runs.values()) for name in models}
    doc["train_seconds_median"] = secs
    doc["device"] = args.device
    print("median training seconds per fold:", ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    atomic_write_text(args.json, json.dumps(doc, indent=2))
    print(f"wrote {args.json} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
