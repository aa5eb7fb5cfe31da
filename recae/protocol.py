"""Top-N protocols with enough power to decide: user folds, baselines tuned like the models, paired tests.

Why: the held-out-users split measures 100 test users, so NDCG@100 has a standard error near 0.02
per model: most differences between models are noise, and EASE's λ fixed at 500 against
autoencoders that pick their epoch on validation users was not a fair bar.

`user_folds` (the `folds` protocol): ratings ≥ 4 are positives; the users with at least 5
positives are shuffled (numpy default_rng(seed)) and cut into 5 near-equal folds (np.array_split
of the permutation, so every such user is a test user exactly once). For fold f: its users are the
test users; 100 validation users are drawn (default_rng((seed, f))) from the other folds only (or a
quarter of those users when there are fewer than 400); every remaining user with a positive (users
with fewer than 5 positives included) is a training user. Validation and test users' positives on
items seen in training are split 80/20 into fold-in and target, per user, as in the `users` split
(recae.interactions.heldout_users_split, Liang et al. 2018).

On each fold every model and baseline is tuned on the validation users only (NDCG@100 of their
targets from their fold-in), then scored once on the test users: the autoencoders keep their best
validation epoch (AutoencoderRecommender.fit with validation users), each baseline picks the best
setting of its grid (recae.baselines.TOPN_BASELINES; ties go to the first in grid order).

Results are the mean and sample standard deviation (ddof=1) over the folds of each metric; the
best autoencoder and the best baseline (by mean NDCG@100) are compared per test user: the
per-user NDCG@100 differences, pooled over the folds (each user is tested once, so the pairs are
independent users), give the mean difference, a two-sided Wilcoxon signed-rank p-value
(scipy.stats.wilcoxon; users with a zero difference, e.g. both models at 0, are dropped as in
Wilcoxon's original test) and a 95 % paired bootstrap interval of the mean difference (10 000
resamples of users, seeded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from core.errors import UserError
from recae.baselines import TOPN_BASELINES, BaselineSpec
from recae.interactions import HeldOutUsers, IdMap, to_csr
from recae.metrics import topn_per_user

log = logging.getLogger(__name__)

KS = (20, 50, 100)
REPORTED = ("recall@20", "recall@50", "recall@100", "ndcg@20", "ndcg@50", "ndcg@100", "mrr@20", "hit@20",
            "coverage@20")
TUNE_METRIC = "ndcg@100"


# ------------------------------------------------------------------------------------------- splits
def positives(frame: pd.DataFrame, min_rating_positive: float = 4.0) -> pd.DataFrame:
    """Ratings ≥ the threshold as implicit positives (rating 1), the rest dropped."""
    pos = frame[frame["rating"] >= min_rating_positive][["user", "item"]].copy()
    pos["rating"] = 1.0
    return pos.reset_index(drop=True)


def fold_in_target(pos: pd.DataFrame, users: Sequence[Any], items: set, fraction: float,
                   rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's positives on `items`, shuffled and split `fraction` / rest (at least one fold-in)."""
    part = pos[pos["user"].isin(set(users)) & pos["item"].isin(items)]
    fold, target = [], []
    for _, g in part.groupby("user", sort=True):
        idx = rng.permutation(len(g))
        n_fold = max(1, int(round(fraction * len(g))))
        fold.append(g.iloc[idx[:n_fold]])
        target.append(g.iloc[idx[n_fold:]])
    empty = pos.iloc[:0]
    return (pd.concat(fold, ignore_index=True) if fold else empty,
            pd.concat(target, ignore_index=True) if target else empty)


def user_folds(frame: pd.DataFrame, n_folds: int = 5, n_val_users: int = 100, fold_in_fraction: float = 0.8,
               min_rating_positive: float = 4.0, min_positives: int = 5, seed: int = 0) -> list[HeldOutUsers]:
    """The `folds` protocol's splits (see the module docstring for the rule), one per fold."""
    if n_folds < 2:
        raise UserError(f"user folds need at least 2 folds, got {n_folds}")
    pos = positives(frame, min_rating_positive)
    counts = pos.groupby("user").size()
    eligible = np.sort(counts[counts >= min_positives].index.to_numpy())
    if len(eligible) < 4 * n_folds:
        raise UserError(f"only {len(eligible)} users have {min_positives}+ ratings >= {min_rating_positive:g}; "
                        f"{n_folds} user folds need at least {4 * n_folds}")
    folds = np.array_split(np.random.default_rng(seed).permutation(eligible), n_folds)
    out = []
    for f, test_users in enumerate(folds):
        rng = np.random.default_rng((seed, f))
        rest = np.sort(np.concatenate([u for g, u in enumerate(folds) if g != f]))
        n_val = min(n_val_users, max(1, len(rest) // 4))
        val_users = rng.choice(rest, n_val, replace=False)
        held = set(test_users.tolist()) | set(val_users.tolist())
        train = pos[~pos["user"].isin(held)].reset_index(drop=True)
        items = set(train["item"])
        vf, vt = fold_in_target(pos, np.sort(val_users), items, fold_in_fraction, rng)
        tf, tt = fold_in_target(pos, np.sort(test_users), items, fold_in_fraction, rng)
        out.append(HeldOutUsers(train, vf, vt, tf, tt))
    return out


@dataclass
class FoldData:
    """One split as matrices over the training items: what every model and baseline is given."""

    split: HeldOutUsers
    item_map: IdMap
    train: sp.csr_matrix
    val_fold: sp.csr_matrix
    val_target: sp.csr_matrix
    test_fold: sp.csr_matrix
    test_target: sp.csr_matrix
    test_users: np.ndarray  # raw ids, the rows of test_fold

    @classmethod
    def from_split(cls, split: HeldOutUsers) -> FoldData:
        if split.train.empty or split.test_fold_in.empty or split.val_fold_in.empty:
            raise UserError("a fold has no training, validation or test positives; use more ratings")
        items = IdMap(split.train["item"])
        train = to_csr(split.train, IdMap(split.train["user"]), items)
        vu, tu = IdMap(split.val_fold_in["user"]), IdMap(split.test_fold_in["user"])
        return cls(split, items, train, to_csr(split.val_fold_in, vu, items), to_csr(split.val_target, vu, items),
                   to_csr(split.test_fold_in, tu, items), to_csr(split.test_target, tu, items), tu.raw)


# ------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One model or baseline on one fold: test metrics, per-user NDCG@100 (for the paired test),
    the setting chosen on the validation users and the validation score of each setting tried."""

    metrics: dict[str, float]
    per_user: np.ndarray
    users: np.ndarray
    chosen: dict[str, Any]
    validation: dict[str, float]
    seconds: float


def _measure(scores: np.ndarray, fold: sp.csr_matrix, target: sp.csr_matrix,
             users: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    per_user, has, top = topn_per_user(scores, target, KS, seen=fold)
    means = {k: float(np.mean(v)) for k, v in per_user.items()}
    means["coverage@20"] = float(len(np.unique(top[:, :20])) / scores.shape[1])
    return {k: round(means[k], 4) for k in REPORTED}, per_user[TUNE_METRIC], users[has]


def _label(setting: dict[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items()) or "-"


def tune(spec: BaselineSpec, data: FoldData) -> tuple[dict[str, Any], dict[str, float]]:
    """The grid setting with the best validation NDCG@100 (the first such in grid order), and the
    validation score of every setting, keyed by its label."""
    scores: dict[str, float] = {}
    best, best_score = spec.grid[0], -np.inf
    for setting in spec.grid:
        model = spec.build(**setting).fit(data.train)
        per_user, _, _ = topn_per_user(model.scores(data.val_fold), data.val_target, (100,), seen=data.val_fold)
        value = float(np.mean(per_user[TUNE_METRIC]))
        scores[_label(setting)] = round(value, 4)
        if value > best_score:
            best, best_score = setting, value
    return dict(best), scores


def run_baseline(spec: BaselineSpec, data: FoldData) -> Run:
    t0 = time.perf_counter()
    chosen, validation = tune(spec, data)
    model = spec.build(**chosen).fit(data.train)
    metrics, per_user, users = _measure(model.scores(data.test_fold), data.test_fold, data.test_target,
                                        data.test_users)
    return Run(metrics, per_user, users, chosen, validation, time.perf_counter() - t0)


def run_autoencoder(rec: Any, data: FoldData) -> Run:
    """Fit an implicit AutoencoderRecommender on the fold's training users (positives rated 5 so that
    they pass any positive threshold), keeping the epoch with the best validation NDCG@100."""
    t0 = time.perf_counter()
    split = data.split
    rec.fit(split.train.assign(rating=5.0), validation=(split.val_fold_in, split.val_target))
    seconds = time.perf_counter() - t0
    if not np.array_equal(np.asarray(rec.item_map_.raw), np.asarray(data.item_map.raw)):
        raise RuntimeError("the recommender's item map differs from the fold's")  # the pairing relies on it
    metrics, per_user, users = _measure(rec.score_rows(rows=data.test_fold), data.test_fold, data.test_target,
                                        data.test_users)
    hist = rec.history_
    epoch = int(hist.best_epoch) + 1 if hist.best_epoch >= 0 else len(hist.train_loss)
    val = {f"epochs={epoch}": round(-float(hist.val_loss[epoch - 1]), 4)} if hist.val_loss else {}
    return Run(metrics, per_user, users, {"epochs": epoch}, val, seconds)


# ---------------------------------------------------------------------------------------- protocol
@dataclass
class ProtocolResult:
    """Per-fold runs of every model and baseline; `to_dict` gives the JSON document's parts."""

    folds: int
    runs: dict[str, list[Run]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # name -> "autoencoder" | "baseline"
    grids: dict[str, list[Any]] = field(default_factory=dict)

    def mean(self, name: str, metric: str = TUNE_METRIC) -> float:
        return float(np.mean([r.metrics[metric] for r in self.runs[name]]))

    def results(self) -> dict[str, dict[str, Any]]:
        """{name: {metric: value}} for one fold, {name: {metric: {"mean", "std"}}} for several."""
        out: dict[str, dict[str, Any]] = {}
        for name, runs in self.runs.items():
            if self.folds == 1:
                out[name] = dict(runs[0].metrics)
            else:
                out[name] = {k: {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v, ddof=1)), 4)}
                             for k in REPORTED for v in [[r.metrics[k] for r in runs]]}
        return out

    def tuning(self) -> dict[str, dict[str, Any]]:
        """{name: {"grid", "chosen" (one per fold), "validation": {"metric", "folds": [{setting: score}]}}}."""
        return {name: {"grid": self.grids[name], "chosen": [r.chosen for r in runs],
                       "validation": {"metric": TUNE_METRIC, "folds": [r.validation for r in runs]}}
                for name, runs in self.runs.items()}

    def best(self, kind: str) -> str | None:
        names = [n for n, k in self.kinds.items() if k == kind]
        return max(names, key=self.mean) if names else None

    def paired(self) -> dict[str, Any] | None:
        """The best autoencoder against the best baseline, per test user (see the module docstring)."""
        model, baseline = self.best("autoencoder"), self.best("baseline")
        if model is None or baseline is None:
            return None
        return paired_comparison(self.runs[model], self.runs[baseline]) | {"model": model, "baseline": baseline}

    def seconds(self) -> dict[str, float]:
        return {name: round(sum(r.seconds for r in runs), 1) for name, runs in self.runs.items()}

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"results": self.results(), "tuning": self.tuning()}
        paired = self.paired()
        if paired is not None:
            doc["paired"] = paired
        doc["seconds"] = self.seconds()
        doc["test_users"] = int(sum(len(r.users) for r in next(iter(self.runs.values()))))
        return doc


def paired_comparison(a: list[Run], b: list[Run], n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Per-user NDCG@100 of `a` minus `b`, pooled over folds: mean, Wilcoxon p-value, bootstrap CI."""
    for ra, rb in zip(a, b):
        if not np.array_equal(ra.users, rb.users):
            raise RuntimeError("paired runs measured different users")
    diff = np.concatenate([ra.per_user - rb.per_user for ra, rb in zip(a, b)])
    try:
        p = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    except ValueError:
        p = 1.0
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"metric": TUNE_METRIC, "mean_difference": round(float(diff.mean()), 4), "p_value": float(f"{p:.3g}"),
            "ci95": [round(float(lo), 4), round(float(hi), 4)], "users": int(len(diff)),
            "test": "two-sided Wilcoxon signed-rank on per-user differences (zeros dropped); "
                    f"ci95: paired bootstrap over users, {n_boot} resamples"}


def run_protocol(splits: Sequence[HeldOutUsers], models: Sequence[str],
                 make_rec: Callable[[str], Any], baselines: Sequence[str] = tuple(TOPN_BASELINES)) -> ProtocolResult:
    """Every model (a fresh recommender from `make_rec(name)` per fold) and baseline on every split."""
    result = ProtocolResult(folds=len(splits))
    for f, split in enumerate(splits, 1):
        data = FoldData.from_split(split)
        for name in models:
            rec = make_rec(name)
            log.info("fold %d/%d: training %s", f, len(splits), name)
            result.runs.setdefault(name, []).append(run_autoencoder(rec, data))
            result.kinds[name] = "autoencoder"
            max_epochs = rec.epochs if rec.epochs is not None else rec.spec.recipe.default_epochs(True)
            result.grids[name] = [{"epochs": f"1..{max_epochs}", "rule": "best validation epoch kept"}]
        for name in baselines:
            spec = TOPN_BASELINES[name]
            log.info("fold %d/%d: tuning %s over %d settings", f, len(splits), name, len(spec.grid))
            result.runs.setdefault(name, []).append(run_baseline(spec, data))
            result.kinds[name] = "baseline"
            result.grids[name] = [dict(s) for s in spec.grid]
    return result
