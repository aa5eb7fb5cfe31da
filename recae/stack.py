"""A stack of explicit autoencoders: member networks blended by weights fitted on held-out ratings.

Why: item-based networks (GLocal-K, I-AutoRec) read an item's ratings by every user, a user-based
one a user's ratings of every item, and they err differently; on ML-100K u1 a third item-based
member adds nothing while a user-based one cuts the RMSE by 0.005 (bench/recae_u1_stack.py).

How (the registry entry's `members` names them): every member trains on a seeded 95 % of the
ratings it is given and predicts the other 5 %; ordinary least squares of those held-out ratings on
the members' predictions and an intercept gives the weights; then every member is retrained on all
the ratings and the stack predicts  intercept + Σ weight·member. The weights, each member's
held-out RMSE and the stack's are kept with the model. The members train with their recipes (no
settings search of their own): the weights are the stack's choice on the user's data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.errors import UserError
from recae.interactions import IdMap, random_split
from recae.selection import fit_bias

log = logging.getLogger(__name__)

VALIDATION_SHARE = 0.05  # of the ratings, held out to fit the weights (bench/recae_u1_stack.py's split)


class Member(Protocol):
    """What the stack needs of a member: an explicit AutoencoderRecommender."""

    def fit(self, ratings: pd.DataFrame) -> Member: ...
    def predict(self, users: Any, items: Any) -> np.ndarray: ...
    def score_rows(self, user_idx: np.ndarray | None = None, rows: sp.csr_matrix | None = None) -> np.ndarray: ...


@dataclass
class StackWeights:
    """The blend and how it was chosen (saved with the model, shown by `ae recae info`)."""

    members: list[str]
    weights: list[float]
    intercept: float
    validation_rmse: float  # the stack's, on the held-out ratings
    member_validation_rmse: list[float]
    fit_ratings: int
    validation_ratings: int
    baseline_rmse: float  # the user+item bias baseline of the same fit part, on the same held-out ratings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StackWeights:
        out = cls(**d)
        if len(out.weights) != len(out.members) or len(out.member_validation_rmse) != len(out.members):
            raise ValueError(f"{len(out.weights)} weights for {len(out.members)} members")
        if not np.all(np.isfinite([*out.weights, out.intercept])):
            raise ValueError("the stack's weights are not finite")
        return out

    def blend(self, member_scores: Sequence[np.ndarray]) -> np.ndarray:
        out = np.full_like(np.asarray(member_scores[0], dtype=np.float64), self.intercept)
        for w, scores in zip(self.weights, member_scores):
            out += w * np.asarray(scores, dtype=np.float64)
        return out


def least_squares_weights(predictions: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights and intercept minimising the squared error of intercept + predictions @ weights."""
    design = np.column_stack([predictions, np.ones(len(truth))])
    coef, *_ = np.linalg.lstsq(design, truth, rcond=None)
    return coef[:-1], float(coef[-1])


def held_out_predictions(member: Member, fit: pd.DataFrame, held: pd.DataFrame,
                         scale: tuple[float, float]) -> np.ndarray:
    """The member's predictions of `held` (clipped to the scale); a user it never saw gets `fit`'s mean."""
    pred = np.full(len(held), float(fit["rating"].mean()))
    known = held["user"].isin(set(fit["user"])).to_numpy()
    if known.any():
        pred[known] = member.predict(held["user"].to_numpy()[known], held["item"].to_numpy()[known])
    return np.clip(pred, *scale)


def fit_stack(make: Callable[[str], Member], members: Sequence[str], ratings: pd.DataFrame, seed: int,
              scale: tuple[float, float]) -> tuple[list[Member], StackWeights]:
    """Fit the weights on a held-out share, then every member on all `ratings` (see the module doc)."""
    fit, held = random_split(ratings, VALIDATION_SHARE, seed=seed)
    fit.attrs, held.attrs = dict(ratings.attrs), dict(ratings.attrs)
    if len(held) < 2 * (len(members) + 1) or fit.empty:
        raise UserError(f"a stack needs more ratings: {len(held)} held out of {len(ratings)} cannot fit "
                        f"{len(members) + 1} weights")
    truth = held["rating"].to_numpy(dtype=float)
    columns = []
    for name in members:
        t0 = time.perf_counter()
        columns.append(held_out_predictions(make(name).fit(fit), fit, held, scale))
        log.info("stack: %s on %d ratings, held-out RMSE %.4f (%.1f s)", name, len(fit),
                 _rmse(columns[-1], truth), time.perf_counter() - t0)
    predictions = np.column_stack(columns)
    weights, intercept = least_squares_weights(predictions, truth)
    stacked = np.clip(intercept + predictions @ weights, *scale)
    users, items = IdMap(fit["user"]), IdMap(fit["item"])
    bias = fit_bias(fit, users, items).predict(users.index_array(held["user"].to_numpy(dtype=object)),
                                               items.index_array(held["item"].to_numpy(dtype=object)))
    chosen = StackWeights(members=list(members), weights=[float(w) for w in weights], intercept=intercept,
                          validation_rmse=_rmse(stacked, truth),
                          member_validation_rmse=[_rmse(c, truth) for c in columns],
                          fit_ratings=len(fit), validation_ratings=len(held),
                          baseline_rmse=_rmse(np.clip(bias, *scale), truth))
    log.info("stack: weights %s, intercept %.3f; held-out RMSE %.4f (bias baseline %.4f)",
             np.round(weights, 3).tolist(), intercept, chosen.validation_rmse, chosen.baseline_rmse)
    if chosen.validation_rmse >= chosen.baseline_rmse:
        log.warning("the stack loses to the user+item bias baseline on the held-out ratings (RMSE %.4f >= %.4f): "
                    "these ratings may be too few or too sparse for its members", chosen.validation_rmse,
                    chosen.baseline_rmse)
    fitted = []
    for name in members:  # the same members, refit on every rating
        fitted.append(make(name).fit(ratings))
    return fitted, chosen


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))
