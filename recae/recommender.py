"""AutoencoderRecommender: fit on ratings, predict ratings, recommend unseen items, fold in new users.

Unknown users raise a clear error (use `fold_in` with their ratings). Items never seen in training
get the user's baseline level (global mean + the user's bias; the global mean in models saved
before the baseline was kept) as their prediction and are never recommended. Predictions are clipped
to the training rating scale. For an item-based model (autorec), a new user's fold-in borrows the
predicted rows of the 100 training users most similar (cosine) to the given ratings; every explicit
model's fold-in leans on the bias baseline while the user has given few ratings (`_blend`).

Results name their value `score` (higher is better) for every model, as batch scoring does: for the
explicit models it is the predicted rating clipped to the training scale, for the implicit ones a
preference score with no rating meaning. Titles (when the data gave them) are kept with the model so
that it can be searched and rated by title (`catalog()`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from core.artifact import Artifact
from core.bundle import ModuleBundle
from core.device import resolve_device
from core.errors import UserError
from core.estimator import Estimator, FittedState
from core.train import History, Monitor, TrainConfig, Trainer
from recae.catalog import Catalog
from recae.interactions import IdMap, Interactions, to_csr
from recae.metrics import evaluate_topn, topk_indices
from recae.models import REGISTRY, ObservedEntries, RecModel, SparseRows, get_model
from recae.selection import SETTINGS, SelectionPlan, SelectionResult, fit_bias, select_settings
from recae.stack import StackWeights, fit_stack

log = logging.getLogger(__name__)

KIND = "recae.AutoencoderRecommender"
DEFAULT_L2 = 0.003  # I-AutoRec's L2 weight, chosen on MovieLens-100K (bench/recae_explicit.py)
# New-user fold-in of the explicit models, chosen on the validation users of ML-100K user fold 0
# (never its test users; bench/recae_foldin.py's protocol, grid K 20/50/100 × shift prior 0/5/15 ×
# blend prior 0/3/10/30, best mean RMSE over n = 1, 3, 5, 10 given ratings)
FOLD_IN_NEIGHBOURS = 100
FOLD_IN_SHIFT_PRIOR = 5.0
NEW_USER_PRIOR = 3.0


def rating_scale(ratings: pd.DataFrame) -> tuple[float, float]:
    """A declared scale (recae.datasets puts it in attrs) wins over the ratings' own min and max."""
    declared = ratings.attrs.get("scale")
    return (tuple(map(float, declared)) if declared is not None
            else (float(ratings["rating"].min()), float(ratings["rating"].max())))


class AutoencoderRecommender(Estimator):
    """`model` names a registry entry of recae.models; `epochs`, `batch_size`, `lr`, `weight_decay`,
    `l2` and `hidden` left as None take the entry's recipe and width (l2: DEFAULT_L2).

    `residual` (models whose entry allows it: autorec): the network learns what the user+item bias
    baseline misses (ratings minus the baseline in and out, trained on the observed entries only)
    and predicts baseline + its output, so an item or user with few ratings falls back to its bias
    instead of being reconstructed from almost nothing; `activation` picks the hidden layer's
    (the entry's `activations`). None: off and the entry's own, unless the search chooses them.

    `tune` (True, or a recae.selection.SelectionPlan): for an explicit model, `fit` first chooses
    the settings left as None among the entry's `grid` on a validation split of the ratings it is
    given (recae.selection), records the search in `selection_` and refits on all of them with the
    choice; with the plan's blend the predictions may lean towards the user+item bias baseline by a
    validation-chosen weight (`blend_weight_`). Like `device`, `tune` says how to fit, not what the
    model is: it is not saved; what it chose is (`settings_`, `selection_`).

    `workers` > 1 trains data-parallel on that many Ray Train workers (core.distributed; the `ray`
    extra): same global batch and seed, so the same model up to rounding. Models trained full-batch
    (lbfgs: autorec) or by a loop of their own (recvae, glocalk) refuse it; the settings search fits
    its candidates with one worker (many short fits, where starting workers would cost more than
    they save) and only the final refit uses `workers`. Like `device`, it says how to fit, not what
    the model is, so it is not a saved parameter; a model trained on more than one worker records
    the count in `settings_` ("workers")."""

    kind = KIND
    _runtime_params = ("device", "progress", "tune", "workers")

    def __init__(self, model: str = "autorec", epochs: int | None = None, batch_size: int | None = None,
                 lr: float | None = None, weight_decay: float | None = None, l2: float | None = None,
                 hidden: int | None = None, positive_threshold: float = 4.0, device: str = "auto", seed: int = 0,
                 progress: bool = False, tune: bool | SelectionPlan = False, workers: int = 1,
                 residual: bool | None = None, activation: str | None = None) -> None:
        self.model, self.epochs, self.batch_size, self.lr = model, epochs, batch_size, lr
        self.weight_decay, self.l2, self.hidden, self.positive_threshold = weight_decay, l2, hidden, positive_threshold
        self.residual, self.activation = residual, activation
        self.device, self.seed, self.progress, self.tune = device, seed, progress, tune
        self.workers = workers

    @property
    def spec(self) -> RecModel:
        """The registry entry of `model` (raises UserError for an unknown name)."""
        return get_model(self.model)

    @property
    def implicit(self) -> bool:
        return self.spec.implicit

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, ratings: pd.DataFrame,
            validation: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> AutoencoderRecommender:
        """`validation`: (fold-in, held-out) positives of users outside `ratings`, for the
        implicit models: training then keeps the epoch with the best validation NDCG@100 (the Mult-VAE
        paper's model selection); without it they train the recipe's fixed number of epochs."""
        spec = self.spec
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.hidden is not None and self.hidden < 1:
            raise UserError(f"hidden must be at least 1, got {self.hidden}")
        if validation is not None and not spec.implicit:
            raise UserError(f"validation users select epochs for the top-N models, not {self.model}")
        for stale in ("members_", "stack_"):  # a refit as another model forgets an earlier stack
            self.__dict__.pop(stale, None)
        if spec.members:
            self.check_workers()
            return self._fit_stack(spec, ratings)
        self._check_shape_settings(spec, self.residual, self.activation)
        self.check_workers()
        self._train_config(spec, validation is not None).validate()  # bad settings fail before any search
        selection = None
        if self.tune and not spec.implicit:
            plan = self.tune if isinstance(self.tune, SelectionPlan) else SelectionPlan(seed=self.seed)
            selection = select_settings(self._candidate, spec, ratings, self.pinned_settings(), plan)
        elif self.tune:
            log.info("%s: no settings search for the top-N models in `fit` (validation users pick their epoch)",
                     self.model)
        overrides = selection.chosen if selection is not None else {}
        cfg = self._train_config(spec, validation is not None, overrides)
        cfg.validate()
        residual = bool(overrides.get("residual", self.residual))
        activation = overrides.get("activation", self.activation)
        self._check_shape_settings(spec, residual, activation)
        frame = ratings
        if spec.implicit:
            frame = ratings[ratings["rating"] >= self.positive_threshold]
            if frame.empty:
                raise UserError(f"no ratings >= {self.positive_threshold} to learn implicit preferences from")
        data = Interactions.from_frame(frame)
        self.user_map_, self.item_map_ = data.user_map, data.item_map
        self.train_ = data.matrix
        # what each user has rated, low ratings included: never recommended back (the implicit
        # models learn from positives only, so their training matrix alone would miss the rest)
        self.seen_ = to_csr(ratings, self.user_map_, self.item_map_) if spec.implicit else self.train_
        self.global_mean_ = float(ratings["rating"].mean())
        self.scale_ = rating_scale(ratings)
        self.dataset_ = None
        self.titles_: list[str | None] | None = None
        bias = None if spec.implicit else fit_bias(ratings, self.user_map_, self.item_map_)
        monitor = self._validation_monitor(*validation) if validation is not None else None
        hidden = overrides.get("hidden", self.hidden)
        hidden = spec.hidden if hidden is None else hidden
        l2 = overrides.get("l2", self.l2)
        l2 = DEFAULT_L2 if l2 is None else l2
        self.settings_: dict[str, Any] = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                          "weight_decay": cfg.weight_decay, "hidden": hidden}
        if spec.l2_penalty:  # reported only where it is trained with (glocalk's L2 is its entry's own)
            self.settings_["l2"] = l2
        if spec.residual:
            self.settings_.update(residual=residual, activation=activation or spec.activations[0])
        if cfg.workers > 1:
            self.settings_["workers"] = cfg.workers
        self.selection_: SelectionResult | None = selection
        self._set_blend(selection.blend_weight if selection is not None else 1.0, bias)
        matrix = self._network_rows()
        torch.manual_seed(self.seed)
        self.module_ = spec.build(matrix.shape[1], hidden, **({"activation": activation} if activation else {}))
        make_trainer = spec.trainer or Trainer  # a model with its own loop (RecVAE) brings it in its entry
        trainer = make_trainer(cfg, spec.objective(l2, cfg.epochs))
        # full-batch on the observed entries only wherever the entry's network allows it (the same loss and
        # gradients as the dense masked loss; a u1.base fit 16.5 -> 10.9 s on 2 CPU cores; on MPS core.sampled
        # computes the same products densely)
        observed = residual or (spec.residual and cfg.optimizer == "lbfgs")
        data = ObservedEntries(matrix) if observed else SparseRows(matrix, spec.inputs)
        self.history_: History = trainer.fit(self.module_, data, monitor)
        self.module_.eval()
        self._full = None
        return self

    def _fit_stack(self, spec: RecModel, ratings: pd.DataFrame) -> AutoencoderRecommender:
        """A stack (recae.stack): its members trained with this recommender's seed, device and any
        pinned settings (epochs, hidden, …), blended by weights fitted on held-out ratings; the shared
        data (id maps, matrix, scale, bias baseline) are the members' own. Its history holds one
        final training loss per member."""
        if self.residual or self.activation is not None:
            raise UserError(f"{self.model} is a stack of {', '.join(spec.members)}: residual and activation are "
                            "its members' own")
        def make(name: str) -> AutoencoderRecommender:
            return type(self)(model=name, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                              weight_decay=self.weight_decay, l2=self.l2, hidden=self.hidden, device=self.device,
                              seed=self.seed, progress=self.progress)

        t0 = time.perf_counter()
        members, self.stack_ = fit_stack(make, spec.members, ratings, self.seed, rating_scale(ratings))
        self.members_ = members
        self._share_members_data()
        self.dataset_, self.titles_ = None, None
        self.settings_ = {"members": list(spec.members), "weights": [round(w, 4) for w in self.stack_.weights],
                          "intercept": round(self.stack_.intercept, 4)}
        self.selection_ = None
        self.module_ = ModuleBundle.of([m.module_ for m in members])
        # one final training loss per member, in `members` order
        self.history_ = History(train_loss=[m.history_.train_loss[-1] for m in members],
                                seconds=time.perf_counter() - t0)
        return self

    def _share_members_data(self) -> None:
        first = self.members_[0]
        self.user_map_, self.item_map_ = first.user_map_, first.item_map_
        self.train_, self.seen_ = first.train_, first.seen_
        self.global_mean_, self.scale_, self.bias_ = first.global_mean_, first.scale_, first.bias_
        self.blend_weight_ = 1.0  # each member applies its own
        self._full = None

    def _check_shape_settings(self, spec: RecModel, residual: bool | None, activation: str | None) -> None:
        if residual and not spec.residual:
            allowed = ", ".join(name for name, entry in REGISTRY.items() if entry.residual)
            raise UserError(f"{self.model} cannot learn the bias baseline's residuals (residual: {allowed})")
        if activation is not None and activation not in spec.activations:
            allowed = ", ".join(spec.activations) or f"none: {self.model}'s activations are fixed"
            raise UserError(f"activation {activation!r} is not one of {self.model}'s ({allowed})")

    @property
    def residual_(self) -> bool:
        """Whether the network learned the bias baseline's residuals (what the fit used)."""
        return bool((getattr(self, "settings_", None) or {}).get("residual", False))

    def _network_rows(self) -> sp.csr_matrix:
        """The training matrix as the network sees it: item rows for item-based models, and for a
        residual model each rating minus the bias baseline (the structure kept, so that a residual
        of exactly 0 stays an observed entry)."""
        rows = self.train_.T.tocsr() if self.spec.item_based else self.train_
        if self.residual_:
            row_of = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
            u, i = (rows.indices, row_of) if self.spec.item_based else (row_of, rows.indices)
            rows = rows.astype(np.float32, copy=True)
            rows.data = (rows.data - self._bias_at(u, i)).astype(np.float32)
        return rows

    def _bias_at(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The bias baseline's prediction (unclipped) at user and item indices."""
        return (self.bias_["mu"] + np.asarray(self.bias_["user"])[users] + np.asarray(self.bias_["item"])[items])

    def check_workers(self) -> None:
        """Refuse `workers` > 1 for a model that cannot train data-parallel, or without Ray, in one
        line (UserError), before any data is read or any search runs."""
        if self.workers == 1:
            return
        spec = self.spec
        if spec.trainer is not None or spec.members:
            raise UserError(f"--workers > 1 trains with core's Trainer; {self.model} brings its own training loop: "
                            "use --workers 1")
        self._train_config(spec, False).validate()  # lbfgs (autorec), a missing `ray`

    def pinned_settings(self) -> dict[str, Any]:
        """The settings given to `__init__` (not None): a search keeps them in every candidate."""
        return {name: getattr(self, name) for name in SETTINGS if getattr(self, name) is not None}

    def _candidate(self, settings: dict[str, Any]) -> AutoencoderRecommender:
        """An untuned copy with `settings` in place, for one fit of the search (no progress bars)."""
        return type(self)(**{**self.get_params(), **settings}, device=self.device, progress=False)

    def _set_blend(self, weight: float, bias: Any) -> None:
        """Keep the user+item bias baseline fitted on the training ratings (explicit models): known
        users' predictions become bias + α·(model − bias) when the search chose α < 1, a new user's
        fold-in leans on it while they have given few ratings (see `_blend`), and a residual model
        adds its output to it."""
        self.blend_weight_ = float(weight)
        self.bias_ = None
        if bias is not None:
            self.bias_ = {"mu": bias.mu_, "reg_user": bias.reg_user, "user": bias.bu_, "item": bias.bi_}

    def _train_config(self, spec: RecModel, validation: bool, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The entry's recipe, with every setting given to `__init__` (not None), or chosen by the
        search (`overrides`), taking its place. With validation users the implicit models train
        longer and keep the best validation epoch."""
        recipe = spec.recipe
        overrides = overrides or {}

        def given(name: str, default: Any) -> Any:
            value = overrides.get(name, getattr(self, name))
            return default if value is None else value

        return TrainConfig(epochs=given("epochs", recipe.default_epochs(validation)),
                           batch_size=given("batch_size", recipe.batch_size), optimizer=recipe.optimizer,
                           lr=given("lr", recipe.lr), weight_decay=given("weight_decay", recipe.weight_decay),
                           seed=self.seed, device=self.device, progress=self.progress,
                           accumulate_grad=spec.accumulate_grad, restore_best=validation,
                           workers=self.workers, description=f"recae {self.model}")

    def _validation_monitor(self, fold_in: pd.DataFrame, target: pd.DataFrame) -> Any:
        users = IdMap(fold_in["user"])
        fold, held = to_csr(fold_in, users, self.item_map_), to_csr(target, users, self.item_map_)
        keep = (np.diff(fold.indptr) > 0) & (np.diff(held.indptr) > 0)
        if not keep.any():
            raise UserError("no validation user has both fold-in and held-out positives")
        fold, held = fold[keep], held[keep]

        def ndcg(_model: Any) -> float:
            return evaluate_topn(self._forward_rows(fold), held, ks=(100,), seen=fold)["ndcg@100"]

        return Monitor(ndcg, name="ndcg@100", higher_is_better=True)

    # ----------------------------------------------------------------------------- raw scoring
    @torch.no_grad()
    def _forward_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        device = resolve_device(self.device)
        self.module_.to(device).eval()
        # toarray of the float32 training rows is float32 already: no second dense copy
        x, _ = self.spec.inputs(torch.from_numpy(rows.toarray().astype(np.float32, copy=False)))
        return self.module_.reconstruct(x.to(device)).float().cpu().numpy()

    def _full_predictions(self) -> np.ndarray:
        """Item-based models: the whole users×items prediction matrix, computed once."""
        if getattr(self, "_full", None) is None:
            cells = self.train_.shape[0] * self.train_.shape[1]
            if cells > 200_000_000:
                user_based = ", ".join(name for name, spec in REGISTRY.items() if not spec.item_based)
                raise UserError(f"{self.model} scoring needs the full users×items matrix; this catalogue is too "
                                f"large (use a user-based model: {user_based})")
            items = self._network_rows()
            out = np.empty((items.shape[0], items.shape[1]), dtype=np.float32)
            for s in range(0, items.shape[0], 1024):
                out[s:s + 1024] = self._forward_rows(items[s:s + 1024])
            self._full = out.T.copy()
            if self.residual_:  # the network's residuals on top of the baseline it learned them from
                self._full += (self.bias_["mu"] + np.asarray(self.bias_["user"])[:, None]
                               + np.asarray(self.bias_["item"])[None, :]).astype(np.float32)
        return self._full

    def score_rows(self, user_idx: np.ndarray | None = None, rows: sp.csr_matrix | None = None) -> np.ndarray:
        """Scores (predicted ratings, or preference logits for implicit models) for known users by
        index, or for new users given their csr rating rows. A pure function of the model and rows."""
        self.check_fitted()
        if getattr(self, "members_", None) is not None:
            return self.stack_.blend([m.score_rows(user_idx, rows) for m in self.members_])
        item_based = self.spec.item_based
        if rows is None:
            scores = self._full_predictions()[user_idx] if item_based else self._forward_rows(self.train_[user_idx])
        else:
            scores = self._neighbour_fold_in(rows) if item_based else self._forward_rows(rows)
        return self._blend(scores, user_idx, rows)

    def _blend(self, scores: np.ndarray, user_idx: np.ndarray | None, rows: sp.csr_matrix | None) -> np.ndarray:
        """bias + w·(scores − bias). Known users: w = α, the search's blend weight (1 without one).
        A new user's bias comes from the ratings given (shrunk as the baseline shrinks it) and
        w = α·n/(n + NEW_USER_PRIOR) for n given ratings: a fold-in from one or two ratings is mostly
        the baseline, one from many mostly the model (bench/recae_foldin.py: without it, I-AutoRec's
        fold-in lost to the bias baseline for every n up to 10)."""
        bias = getattr(self, "bias_", None)
        if bias is None or self.implicit:
            return scores
        mu, item = bias["mu"], np.asarray(bias["item"])
        a = np.full(len(scores), self.blend_weight_)
        if rows is None:
            user = np.asarray(bias["user"])[user_idx]
        else:
            rows = sp.csr_matrix(rows)
            n = np.diff(rows.indptr)
            resid = sp.csr_matrix((rows.data - mu - item[rows.indices], rows.indices, rows.indptr), shape=rows.shape)
            user = np.asarray(resid.sum(1)).ravel() / (n + bias["reg_user"])
            a = a * n / (n + NEW_USER_PRIOR)
        if (a == 1.0).all():  # before the users×items baseline is built: nothing to blend
            return scores
        base = mu + user[:, None] + item[None, :]
        return (base + a[:, None] * (scores - base)).astype(np.float32)

    def _neighbour_fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        """Item-based models: a new user's row is the similarity-weighted mean of the predicted rows
        of their FOLD_IN_NEIGHBOURS most similar training users (cosine on the ratings given), moved
        by the mean residual of the given ratings shrunk by FOLD_IN_SHIFT_PRIOR pseudo-ratings (an
        unshrunk shift from one rating moved a whole row by up to 4 stars)."""
        train = self.train_
        norms = np.sqrt(np.asarray(train.multiply(train).sum(1)).ravel()) + 1e-9
        r_norm = np.sqrt(np.asarray(rows.multiply(rows).sum(1)).ravel()) + 1e-9
        sim = np.asarray((rows @ train.T).todense()) / r_norm[:, None] / norms[None, :]
        full = self._full_predictions()
        top = topk_indices(sim, min(FOLD_IN_NEIGHBOURS, train.shape[0]))
        w = np.take_along_axis(sim, top, axis=1)
        w = np.where(w.sum(1, keepdims=True) > 0, w, 1.0)
        pred = np.einsum("uk,uki->ui", w, full[top]) / w.sum(1, keepdims=True)
        given = rows.toarray()
        mask = given > 0
        shift = ((given - pred) * mask).sum(1) / (mask.sum(1) + FOLD_IN_SHIFT_PRIOR)
        return pred + shift[:, None]

    # -------------------------------------------------------------------------------- public API
    def _user_index(self, user: Any) -> int:
        try:
            return self.user_map_.to_index(user)
        except KeyError:
            raise UserError(f"unknown user {user!r}: not in the training data (use fold-in with their ratings: "
                            f"--rate ITEM:RATING,...)") from None

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """Predicted ratings for (user, item) pairs of raw ids (explicit models)."""
        self.check_fitted()
        if self.implicit:
            raise UserError(f"{self.model} learns implicit preferences; it ranks items but does not predict ratings")
        users, items = np.atleast_1d(np.asarray(users, dtype=object)), np.atleast_1d(np.asarray(items, dtype=object))
        u = self.user_map_.index_array(users)
        if (u < 0).any():
            self._user_index(users[np.argmax(u < 0)])
        i = self.item_map_.index_array(items)
        bias = getattr(self, "bias_", None)  # an item never seen in training: the user's own level
        out = (bias["mu"] + np.asarray(bias["user"])[u] if bias is not None
               else np.full(len(u), self.global_mean_))
        known = i >= 0
        uniq, inv = np.unique(u[known], return_inverse=True)
        if len(uniq):
            scores = self.score_rows(uniq)
            out[known] = scores[inv, i[known]]
        return np.clip(out, *self.scale_)

    def _top(self, scores: np.ndarray, seen: sp.csr_matrix, k: int,
             inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The k best item indices per row, best first, and their scores (float64): items `seen`
        (its stored nonzero entries) score -inf, and so do NaN scores, so that they come last (callers
        drop the non-finite). Equal scores: the lower item index first (and in, at the k-th place).
        `inplace`: `scores` is the caller's own scratch array (float32 or float64), masked in place
        instead of copied.

        One torch.topk over the float32 scores (float32 values compare as their float64 copies
        do, so the choice and order are the float64 ones); the seen mask is set from the CSR
        arrays directly."""
        scores = np.asarray(scores)
        work = scores.dtype if scores.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        if not (inplace and scores.dtype == work and scores.flags.c_contiguous and scores.flags.writeable):
            scores = np.array(scores, dtype=work, order="C", copy=True)
        seen = seen.tocsr()
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        cols = seen.indices
        stored = seen.data != 0  # what `nonzero()` counts: an explicit zero is not a rating
        if not stored.all():
            rows, cols = rows[stored], cols[stored]
        scores[rows, cols] = -np.inf
        k = min(k, scores.shape[1])
        kk = min(k + 1, scores.shape[1])  # one more: shows equal scores straddling the k-th place
        t = torch.from_numpy(scores)
        best, top = torch.topk(t, kk, dim=1)
        if torch.isnan(best).any():  # topk ranks NaN above everything: a row with one has it in its top
            t.masked_fill_(torch.isnan(t), -np.inf)
            best, top = torch.topk(t, kk, dim=1)
        best, top = best.numpy(), top.numpy()
        if kk > k:
            for r in np.flatnonzero((best[:, k] == best[:, k - 1]) & np.isfinite(best[:, k - 1])):  # rare
                row, edge = scores[r], best[r, k - 1]
                above = np.flatnonzero(row > edge)
                above = above[np.argsort(-row[above], kind="stable")]
                top[r, :k] = np.concatenate([above, np.flatnonzero(row == edge)[:k - len(above)]])
                best[r, :k] = row[top[r, :k]]
            best, top = best[:, :k], top[:, :k]
        order = np.lexsort((top, -best), axis=-1)  # equal scores: lower item index first
        top = np.take_along_axis(top, order, axis=1)
        vals = np.take_along_axis(best, order, axis=1).astype(np.float64)
        if not self.implicit:  # clip predicted ratings to the scale; seen items stay -inf (never offered)
            vals = np.where(np.isfinite(vals), np.clip(vals, *self.scale_), vals)
        return top, vals

    def _frame(self, top: np.ndarray, vals: np.ndarray) -> pd.DataFrame:
        ok = np.isfinite(vals[0])
        return pd.DataFrame({"rank": np.arange(1, ok.sum() + 1), "item": self.item_map_.to_raw(top[0][ok]),
                             "score": vals[0][ok]})

    def recommend(self, user: Any, k: int = 10) -> pd.DataFrame:
        """Top-k items the user has not rated, best first."""
        self.check_fitted()
        self._check_k(k)
        u = self._user_index(user)
        top, vals = self._top(self.score_rows(np.array([u])), self.seen_[[u]], k)
        return self._frame(top, vals)

    def fold_in(self, ratings: dict[Any, float], k: int = 10) -> pd.DataFrame:
        """Recommendations for a new user from a few ratings, without retraining."""
        self.check_fitted()
        self._check_k(k)
        if not ratings:
            raise UserError("fold-in needs at least one rating")
        known = {item: float(r) for item, r in ratings.items() if item in self.item_map_}
        unknown = [item for item in ratings if item not in self.item_map_]
        if unknown:
            log.warning("ignoring %d item(s) unknown to the model: %s", len(unknown), unknown[:5])
        if not known:
            raise UserError("none of the rated items is known to the model")
        lo, hi = self.scale_
        bad = [r for r in known.values() if not lo <= r <= hi]
        if bad:
            raise UserError(f"rating {bad[0]} is outside the scale {lo:g}-{hi:g}")
        frame = pd.DataFrame({"user": 0, "item": list(known), "rating": list(known.values())})
        given = to_csr(frame, IdMap([0]), self.item_map_)  # every rated item, excluded from the results
        if self.implicit:
            frame = frame[frame["rating"] >= self.positive_threshold]
            if frame.empty:
                frame = pd.DataFrame({"user": 0, "item": list(known), "rating": 1.0})
        row = to_csr(frame, IdMap([0]), self.item_map_)
        top, vals = self._top(self.score_rows(rows=row), given, k)
        return self._frame(top, vals)

    @staticmethod
    def _check_k(k: int) -> None:
        if k < 1:
            raise UserError(f"-k must be at least 1, got {k}")

    def score_users(self, user_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for a batch of known users (batch scoring)."""
        scores = self.score_rows(user_idx)
        full = getattr(self, "_full", None)  # item-based rows are copies of it; never mask it in place
        owned = full is None or not np.may_share_memory(scores, full)
        return self._top(scores, self.seen_[user_idx], k, inplace=owned)

    # ------------------------------------------------------------------------------- catalogue
    def attach_titles(self, items: pd.DataFrame) -> AutoencoderRecommender:
        """Keep the titles (`item`, `title` columns) of the model's items, saved with it, so that
        users can search and rate by title without the dataset at hand. Items the model never saw
        are ignored; a model item without a row has no title."""
        self.check_fitted()
        missing = [c for c in ("item", "title") if c not in items.columns]
        if missing:
            raise UserError(f"item titles need columns item and title; missing {', '.join(missing)}")
        idx = self.item_map_.index_array(items["item"].to_numpy(dtype=object))
        titles: list[str | None] = [None] * len(self.item_map_)
        for i, title in zip(idx, items["title"]):
            if i >= 0 and isinstance(title, str) and title.strip():
                titles[i] = title.strip()
        if not any(titles):
            log.warning("none of the %d titles given names an item of the model; keeping no titles", len(items))
            self.titles_ = None
        else:
            self.titles_ = titles
        return self

    def item_popularity(self) -> np.ndarray:
        """Ratings per item in training (low ratings included), by item index."""
        self.check_fitted()
        return np.bincount(self.seen_.indices, minlength=self.seen_.shape[1]).astype(np.int64)

    def catalog(self) -> Catalog:
        """The items with titles and popularity. A model saved before titles were kept, but trained
        on a named dataset, borrows the dataset's titles when its files are present."""
        self.check_fitted()
        if getattr(self, "titles_", None) is None and self.dataset_:
            from recae.datasets import load_items

            items = load_items(self.dataset_)
            if items is not None:
                self.attach_titles(items)
        return Catalog(self.item_map_, self.titles_, self.item_popularity())

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path, metrics: dict[str, Any] | None = None, dataset: str | None = None) -> Path:
        """`dataset`: the named dataset (ml-100k, ml-1m) the ratings came from, recorded so that
        `recommend` can show titles; None keeps the one recorded before (if loaded)."""
        if dataset is not None:
            self.check_fitted()
            self.dataset_ = dataset
        return super().save(path, metrics)

    def _fitted_state(self) -> FittedState:
        if getattr(self, "members_", None) is not None:
            return self._stack_state()
        t = self.train_.tocoo()
        extras = {"user_map": self.user_map_.to_dict(), "item_map": self.item_map_.to_dict(),
                  "global_mean": self.global_mean_, "scale": self.scale_, "dataset": self.dataset_,
                  "titles": getattr(self, "titles_", None), "history": self.history_.to_dict(),
                  "shape": list(self.train_.shape), "settings": getattr(self, "settings_", None),
                  "selection": self.selection_.to_dict() if getattr(self, "selection_", None) is not None else None,
                  "blend_weight": getattr(self, "blend_weight_", 1.0)}
        tensors = {"train_row": torch.from_numpy(t.row.astype(np.int64)),
                   "train_col": torch.from_numpy(t.col.astype(np.int64)),
                   "train_val": torch.from_numpy(t.data.astype(np.float32))}
        if getattr(self, "bias_", None) is not None:
            extras.update(bias_mu=self.bias_["mu"], bias_reg_user=self.bias_["reg_user"])
            tensors.update(bias_user=torch.from_numpy(np.asarray(self.bias_["user"], dtype=np.float64)),
                           bias_item=torch.from_numpy(np.asarray(self.bias_["item"], dtype=np.float64)))
        if self.seen_ is not self.train_:  # only the positions: every rated item counts as seen
            s = self.seen_.tocoo()
            tensors.update(seen_row=torch.from_numpy(s.row.astype(np.int64)),
                           seen_col=torch.from_numpy(s.col.astype(np.int64)))
        return FittedState(self.module_, extras, tensors)

    def _stack_state(self) -> FittedState:
        """A stack: the bundle of its members' networks, each member's own state (its extras as it
        would save them, its tensors under member{k}.), the weights, titles and dataset."""
        extras: dict[str, Any] = {"stack": self.stack_.to_dict(), "titles": self.titles_, "dataset": self.dataset_,
                                  "history": self.history_.to_dict(), "settings": self.settings_, "members": []}
        tensors: dict[str, torch.Tensor] = {}
        for k, member in enumerate(self.members_):
            state = member._fitted_state()
            extras["members"].append({"params": member.get_params(), **state.extras})
            tensors.update({f"member{k}.{name}": value for name, value in state.tensors.items()})
        return FittedState(self.module_, extras, tensors)

    def _restore_stack(self, artifact: Artifact) -> None:
        ex, bundle = artifact.extras, artifact.model
        if not isinstance(bundle, ModuleBundle) or len(bundle.members) != len(ex["members"]):
            raise ValueError("the stack's networks do not match its members")
        self.members_ = []
        for k, member_extras in enumerate(ex["members"]):
            prefix = f"member{k}."
            member = type(self)(**type(self)._params_from_saved(member_extras), device=self.device)
            member._restore(Artifact(model=bundle.members[k], extras=member_extras,
                                     tensors={name[len(prefix):]: value for name, value in artifact.tensors.items()
                                              if name.startswith(prefix)}))
            self.members_.append(member)
        self.stack_ = StackWeights.from_dict(ex["stack"])
        if self.stack_.members != [m.model for m in self.members_] or self.stack_.members != list(self.spec.members):
            raise ValueError(f"the stack's members {self.stack_.members} are not {self.model}'s")
        self._share_members_data()
        self.module_ = bundle
        self.dataset_, self.titles_ = ex.get("dataset"), ex.get("titles")
        if self.titles_ is not None and len(self.titles_) != self.train_.shape[1]:
            raise ValueError(f"{len(self.titles_)} titles for {self.train_.shape[1]} items")
        self.history_ = History.from_dict(ex["history"])
        self.settings_, self.selection_ = ex.get("settings"), None

    def _restore(self, artifact: Artifact) -> None:
        if "members" in artifact.extras:
            self._restore_stack(artifact)
            return
        ex, t = artifact.extras, artifact.tensors
        shape = tuple(ex["shape"])
        self.module_ = artifact.model
        self.user_map_ = IdMap.from_dict(ex["user_map"])
        self.item_map_ = IdMap.from_dict(ex["item_map"])
        self.global_mean_, self.scale_ = float(ex["global_mean"]), tuple(ex["scale"])
        self.dataset_ = ex.get("dataset")
        self.titles_ = ex.get("titles")  # absent in models saved before titles were kept
        if self.titles_ is not None and len(self.titles_) != shape[1]:
            raise ValueError(f"{len(self.titles_)} titles for {shape[1]} items")
        self.history_ = History.from_dict(ex["history"])
        # absent in models saved before the settings search: the settings then are the params'
        self.settings_ = ex.get("settings")
        self.selection_ = SelectionResult.from_dict(ex["selection"]) if ex.get("selection") else None
        self.blend_weight_ = float(ex.get("blend_weight", 1.0))
        self.bias_ = None
        if "bias_mu" in ex:  # absent in models saved before the bias baseline was kept
            self.bias_ = {"mu": float(ex["bias_mu"]), "reg_user": float(ex["bias_reg_user"]),
                          "user": t["bias_user"].numpy(), "item": t["bias_item"].numpy()}
        self.train_ = sp.csr_matrix((t["train_val"].numpy(), (t["train_row"].numpy(), t["train_col"].numpy())),
                                    shape=shape)
        self.seen_ = self.train_
        if "seen_row" in t:
            rows, cols = t["seen_row"].numpy(), t["seen_col"].numpy()
            self.seen_ = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
        self._full = None

    def _self_check(self) -> None:
        if getattr(self, "members_", None) is not None:  # a stack: each member whole, all on one matrix
            for member in self.members_:
                member._self_check()
                if member.train_.shape != self.train_.shape or list(member.user_map_.raw) != list(self.user_map_.raw):
                    raise UserError("the stack's members were not trained on the same ratings")
            return
        n_users, n_items = self.train_.shape
        if (len(self.user_map_), len(self.item_map_)) != (n_users, n_items):
            raise UserError(f"the id maps ({len(self.user_map_)} users, {len(self.item_map_)} items) do not fit the "
                            f"training matrix ({n_users} × {n_items})")
        if len(self.user_map_.index) != n_users or len(self.item_map_.index) != n_items:
            raise UserError("the id maps repeat an id")
        lo, hi = self.scale_ if len(self.scale_) == 2 else (None, None)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in (lo, hi)) \
                or not lo < hi or not np.isfinite(self.global_mean_):
            raise UserError(f"the rating scale {list(self.scale_)} is not two finite numbers LO < HI")
        if self.titles_ is not None and not all(t is None or isinstance(t, str) for t in self.titles_):
            raise UserError("item titles must be strings")
        if not 0.0 <= self.blend_weight_ <= 1.0:
            raise UserError(f"the blend weight {self.blend_weight_} is not in [0, 1]")
        if self.bias_ is not None and (len(self.bias_["user"]), len(self.bias_["item"])) != (n_users, n_items):
            raise UserError("the bias baseline does not fit the training matrix")
        if self.residual_ and self.bias_ is None:
            raise UserError("a residual model needs the bias baseline it learned the residuals of; it is missing")
        # one forward pass (a user's row, or an item's for item-based models): what passed the checks must run
        self._forward_rows((self.train_.T.tocsr() if self.spec.item_based else self.train_)[:1])
