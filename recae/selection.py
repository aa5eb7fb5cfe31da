"""Choosing an explicit model's data-dependent settings on the user's own ratings.

The recipes of recae.models (L2 weight, epochs, width) were tuned on MovieLens-100K; on another
catalogue (more items, fewer ratings per item, half stars) the same recipe can lose to the
user+item bias baseline. `select_settings` measures that on the ratings it is given, never on a
test set:

- validation split: a seeded `fraction` (10 %) of each user's ratings, for users with at least
  `min_user_ratings` ratings (others keep all theirs in the fit part); at least one rating per
  such user is held out;
- search: each candidate of the entry's `grid` in order (recae.models; {} is the recipe as it is;
  the first is always tried, so grids put their cheapest candidates first), with the settings the
  user pinned kept in every candidate, is trained on the fit part and
  scored by RMSE on the validation ratings, beside recae.baselines.BiasBaseline fitted on the same
  fit part. At most `max_fits` candidates; once `budget_s` is spent, or the next fit is projected
  to overrun it (the mean time of the fits so far), the rest are skipped and recorded as skipped;
- fallback (`blend`): the weight α in [0, 1] of bias + α·(model − bias) that minimises the
  validation RMSE of the chosen candidate (closed form, no extra fit). α = 1 is the autoencoder
  alone; α < 1 pulls its predictions towards the bias baseline, so what ships is never worse than
  the baseline on validation (α = 0 is the baseline itself);
- the final model is refit on ALL the given ratings with the chosen settings (and the bias
  baseline with it, when α < 1): the validation figures describe the search, not the refit model.

The result (every trial, the baseline, the choice, the blend weight) is kept in the fitted model
(`AutoencoderRecommender.selection_`), saved with it and shown by `ae recae info`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from recae.baselines import BiasBaseline
from recae.interactions import IdMap
from recae.metrics import rmse
from recae.models import RecModel

log = logging.getLogger(__name__)

# the recommender's parameters a grid may set (the data-dependent training settings)
SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "l2", "hidden", "residual", "activation")
MAX_FITS = 6


@dataclass(frozen=True)
class SelectionPlan:
    """How the search runs: the validation split rule, how many fits, how long, the fallback."""

    fraction: float = 0.1  # of each user's ratings held out for validation
    min_user_ratings: int = 5  # users with fewer ratings keep them all in the fit part
    seed: int = 0
    max_fits: int = MAX_FITS
    budget_s: float | None = None  # wall-clock seconds for the search; None: only max_fits bounds it
    blend: bool = True  # fall back towards the bias baseline by a validation-chosen weight

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 0.5:
            raise UserError(f"the validation fraction must be in (0, 0.5), got {self.fraction}")
        if not 1 <= self.max_fits <= MAX_FITS:
            raise UserError(f"a search makes 1 to {MAX_FITS} fits, not {self.max_fits}")
        if self.budget_s is not None and self.budget_s <= 0:
            raise UserError(f"the search budget must be positive seconds, got {self.budget_s}")

    @property
    def rule(self) -> str:
        return (f"seeded ({self.seed}) {self.fraction:.0%} of each user's ratings (at least 1) for users with "
                f"{self.min_user_ratings}+ ratings; RMSE")

    def split(self, ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(fit, validation) parts of `ratings` by the rule above."""
        rng = np.random.default_rng(self.seed)
        codes = pd.factorize(ratings["user"])[0]
        counts = np.bincount(codes)
        order = rng.permutation(len(ratings))  # each user's first k rows in this order are held out
        shuffled = codes[order]
        rank = pd.Series(shuffled).groupby(shuffled).cumcount().to_numpy()
        k = np.maximum(1, np.floor(counts * self.fraction)).astype(int)
        held = np.zeros(len(ratings), dtype=bool)
        held[order] = (rank < k[shuffled]) & (counts[shuffled] >= self.min_user_ratings)
        fit, val = ratings[~held], ratings[held]
        if val.empty or fit.empty:
            raise UserError(f"too few ratings to hold out a validation split (no user has {self.min_user_ratings}+ "
                            f"ratings); train with --no-tune")
        for part in (fit, val):  # keep the declared scale with both parts
            part.attrs.update(ratings.attrs)
        return fit, val

    def candidates(self, spec: RecModel, pinned: dict[str, Any]) -> list[dict[str, Any]]:
        """The entry's grid with the pinned settings put into every candidate, duplicates dropped,
        in grid order (the first is always tried), at most `max_fits`."""
        grid = spec.grid or ({},)
        out: list[dict[str, Any]] = []
        for candidate in grid:
            unknown = sorted(set(candidate) - set(SETTINGS))
            if unknown:
                raise ValueError(f"{spec.name}'s grid sets {', '.join(unknown)}; "
                                 f"a grid sets only {', '.join(SETTINGS)}")
            merged = {**candidate, **pinned}
            if merged not in out:
                out.append(merged)
        return out[:self.max_fits]


@dataclass
class Trial:
    settings: dict[str, Any]  # the candidate (pinned settings included); the rest is the recipe's
    val_rmse: float
    seconds: float


@dataclass
class SelectionResult:
    """The record of one search, kept in the fitted model (JSON-able through to_dict/from_dict)."""

    model: str
    rule: str
    trials: list[Trial]
    skipped: list[dict[str, Any]]  # candidates the budget left out
    chosen: dict[str, Any]  # the winning candidate
    model_rmse: float  # the chosen candidate alone, on validation
    baseline_rmse: float  # the user+item bias baseline, same fit part, same validation ratings
    blend_weight: float  # α of bias + α·(model − bias); 1.0: the autoencoder alone
    blended_rmse: float  # what ships, on validation
    fit_ratings: int
    val_ratings: int
    seconds: float
    refit: str = "all given ratings, with the chosen settings"
    baseline: str = "bias (user+item, BiasBaseline)"
    metric: str = "rmse"

    @property
    def model_beats_baseline(self) -> bool:
        return self.model_rmse < self.baseline_rmse

    @property
    def gain(self) -> float:
        """Relative validation RMSE gain of what ships over the bias baseline (0.05 = 5 % lower)."""
        return 1.0 - self.blended_rmse / self.baseline_rmse

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SelectionResult:
        doc = dict(doc)
        doc["trials"] = [Trial(**t) for t in doc["trials"]]
        return cls(**doc)

    def describe(self, settings: str = "") -> list[str]:
        """Human-readable lines: the choice and the validation figures beside the baseline."""
        chosen = _fmt_settings(self.chosen)
        lines = [f"settings chosen on validation ({self.rule}): {self.model} {chosen}"
                 f"{' -> ' + settings if settings else ''}; {len(self.trials)} fit(s) in {self.seconds:.1f} s"
                 f"{f', {len(self.skipped)} skipped (time budget)' if self.skipped else ''}",
                 f"validation RMSE over {self.val_ratings} ratings: {self.model} {self.model_rmse:.4f}, "
                 f"bias baseline {self.baseline_rmse:.4f}"]
        if self.blend_weight < 1.0:
            lines.append(f"shipped: bias + {self.blend_weight:.2f}·({self.model} − bias), validation RMSE "
                         f"{self.blended_rmse:.4f} ({self.gain:+.1%} vs the bias baseline)")
        lines.append(f"final model refit on {self.refit}")
        return lines

    def warnings(self) -> list[str]:
        """Plain warnings when the autoencoder loses to the bias baseline on validation."""
        out = []
        if not self.model_beats_baseline:
            what = (f"shipping bias + {self.blend_weight:.2f}·({self.model} − bias) instead (validation RMSE "
                    f"{self.blended_rmse:.4f})" if self.blend_weight < 1.0 else "shipping it anyway")
            out.append(f"{self.model} loses to the user+item bias baseline on a validation split of your ratings: "
                       f"RMSE {self.model_rmse:.4f} vs {self.baseline_rmse:.4f}; {what}")
        if self.gain < 0.005:
            out.append(f"the model is no better than the bias baseline on these ratings (validation RMSE "
                       f"{self.blended_rmse:.4f} vs {self.baseline_rmse:.4f}): its recommendations are mostly "
                       "item popularity and rating bias")
        return out


def _fmt_settings(settings: dict[str, Any]) -> str:
    return "(" + (", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
                  or "recipe") + ")"


def blend_weight(pred: np.ndarray, base: np.ndarray, true: np.ndarray) -> float:
    """α in [0, 1] minimising Σ(true − base − α·(pred − base))²."""
    d = pred - base
    denom = float(d @ d)
    if denom <= 0:
        return 1.0
    return float(np.clip(((true - base) @ d) / denom, 0.0, 1.0))


def fit_bias(ratings: pd.DataFrame, users: IdMap, items: IdMap) -> BiasBaseline:
    """The bias baseline on `ratings`, indexed by the given id maps (a model's own)."""
    u = users.index_array(ratings["user"].to_numpy(dtype=object))
    i = items.index_array(ratings["item"].to_numpy(dtype=object))
    return BiasBaseline().fit(u, i, ratings["rating"].to_numpy(dtype=float), len(users), len(items))


def select_settings(make: Callable[[dict[str, Any]], Any], spec: RecModel, ratings: pd.DataFrame,
                    pinned: dict[str, Any], plan: SelectionPlan | None = None) -> SelectionResult:
    """Search `spec.grid` on a validation split of `ratings`. `make(settings)` returns an unfitted
    recommender with those settings (it must have `fit`, `predict`, `user_map_`, `item_map_` after
    fitting). Returns the record; the caller refits on all of `ratings`."""
    if spec.implicit:
        raise UserError(f"{spec.name} ranks items; settings are chosen by validation RMSE for the explicit models")
    plan = plan or SelectionPlan()
    fit, val = plan.split(ratings)
    true = val["rating"].to_numpy(dtype=float)
    vu, vi = val["user"].to_numpy(dtype=object), val["item"].to_numpy(dtype=object)
    start = time.perf_counter()
    trials: list[Trial] = []
    skipped: list[dict[str, Any]] = []
    best: tuple[float, np.ndarray | None, Any] = (np.inf, None, None)
    candidates = plan.candidates(spec, pinned)
    for n, settings in enumerate(candidates):
        spent = time.perf_counter() - start
        if trials and plan.budget_s is not None and spent + spent / len(trials) > plan.budget_s:
            skipped = candidates[n:]
            log.info("search budget %.0f s: skipping %d candidate(s) after %.0f s", plan.budget_s, len(skipped), spent)
            break
        t0 = time.perf_counter()
        rec = make(settings).fit(fit)
        pred = rec.predict(vu, vi)
        score = rmse(pred, true)
        trials.append(Trial(dict(settings), round(float(score), 4), round(time.perf_counter() - t0, 1)))
        log.info("validation %s %s: RMSE %.4f (%.1f s)", spec.name, _fmt_settings(settings), score, trials[-1].seconds)
        if score < best[0]:
            best = (score, pred, rec)
    score, pred, rec = best
    bias = fit_bias(fit, rec.user_map_, rec.item_map_)
    base = bias.predict(rec.user_map_.index_array(vu), rec.item_map_.index_array(vi))
    base_rmse = rmse(base, true)
    alpha = blend_weight(pred, base, true) if plan.blend else 1.0
    alpha = round(alpha, 3)
    blended = np.clip(base + alpha * (pred - base), *rec.scale_)
    chosen = trials[[t.val_rmse for t in trials].index(min(t.val_rmse for t in trials))].settings
    return SelectionResult(model=spec.name, rule=plan.rule, trials=trials, skipped=skipped, chosen=chosen,
                           model_rmse=round(float(score), 4), baseline_rmse=round(float(base_rmse), 4),
                           blend_weight=alpha, blended_rmse=round(float(rmse(blended, true)), 4),
                           fit_ratings=int(len(fit)), val_ratings=int(len(val)),
                           seconds=round(time.perf_counter() - start, 1))


__all__ = ["MAX_FITS", "SETTINGS", "SelectionPlan", "SelectionResult", "Trial", "blend_weight", "fit_bias",
           "select_settings"]
