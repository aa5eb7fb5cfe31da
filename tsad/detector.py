"""WindowDetector: a sliding-window autoencoder anomaly detector, estimator-style.

Train on normal data; score every timestamp by reconstruction error; alert above a threshold fitted
on training scores; map scores to [0, 1] with a tail calibrator fitted on training scores.

Scoring modes:
- causal: the score at t uses only rows ≤ t: the mean squared error of the last `scoring.causal_tail`
  points of the window ending at t (the whole window by default). The first `window − 1` rows
  have no complete window and get NaN (probability 0, never an alert).
- offline: each point's squared error averaged over every window covering it.
`scoring.smooth` > 1 then averages each score over the trailing `smooth` rows (still causal; telemanom
smooths its errors the same way), so a lasting deviation outranks a one-row spike. Streams keep
`context_rows` rows of history to reproduce batch scores exactly.
Per-channel contributions are each channel's share of the score, so an alert names the sensors.
The settings are one DetectorConfig (tsad.config); the network variants come from tsad.variants.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.artifact import Artifact
from core.bundle import ModuleBundle
from core.corruption import Corruption
from core.device import resolve_device
from core.errors import ArtifactError, UserError
from core.estimator import Estimator, FittedState
from core.losses import BetaSchedule
from core.objective import ReconstructionObjective
from core.train import History, Trainer
from core.typecheck import check_field_types
from core.variational import VAEOutput
from tsad.alerting import alerting_from_dict, fit_alerting
from tsad.config import CONFIG_VERSION, DetectorConfig, from_dict, from_flat_v1, from_saved_v2
from tsad.datasets import Series
from tsad.thresholds import TailCalibrator, Threshold
from tsad.variants import Variant, get_variant
from tsad.windows import Scaler, sliding_windows

log = logging.getLogger(__name__)

KIND = "tsad.WindowDetector"


@dataclass
class Scores:
    score: np.ndarray  # (n,)
    score_prob: np.ndarray  # (n,) in [0, 1]
    is_anomaly: np.ndarray  # (n,) bool
    contributions: np.ndarray  # (n, channels), rows sum to 1 where scored
    points_per_second: float = 0.0
    alert_score: np.ndarray | None = None  # (n,) what the alerting compares (tsad.alerting)


def trailing_mean(x: np.ndarray, span: int) -> np.ndarray:
    """Mean of each row and the span − 1 before it, along axis 0; NaN until span finite rows exist."""
    frame = pd.DataFrame(np.asarray(x, dtype=float).reshape(len(x), -1))
    return frame.rolling(span, min_periods=span).mean().to_numpy().reshape(np.shape(x))


class FlatWindows(nn.Module):
    """Lets a module that reads flat vectors (DenseAE) take (batch, channels, window) windows."""

    def __init__(self, inner: nn.Module, shape: tuple[int, int]) -> None:
        super().__init__()
        self.inner, self.shape = inner, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.flatten(1)).view(-1, *self.shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.reconstruct(x.flatten(1)).view(-1, *self.shape)


class CenteredWindows(nn.Module):
    """network.center: the inner module sees each (batch, channels, window) window minus its
    per-channel mean, which is added back to its reconstruction; training, scoring and --adapt all
    go through this, so they agree."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @staticmethod
    def _shifted(out: Any, level: torch.Tensor) -> Any:
        return out._replace(recon=out.recon + level) if isinstance(out, VAEOutput) else out + level

    def forward(self, x: torch.Tensor) -> Any:
        level = x.mean(dim=2, keepdim=True)
        return self._shifted(self.inner(x - level), level)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        level = x.mean(dim=2, keepdim=True)
        return self.inner.reconstruct(x - level) + level


def as_window_model(variant: Variant, module: nn.Module, channels: int, window: int,
                    center: bool = False) -> nn.Module:
    """The module the detector trains and scores with (the saved module is always the inner one)."""
    net = FlatWindows(module, (channels, window)) if variant.flat_input else module
    return CenteredWindows(net) if center else net


class WindowEnsemble(nn.Module):
    """Window models trained apart (network.ensemble); see `squared_errors`."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)


def squared_errors(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(window − reconstruction)² per entry; an ensemble's is the mean of its members' errors."""
    if isinstance(net, WindowEnsemble):  # a running sum: one member's errors in memory at a time
        total = squared_errors(net.nets[0], x)
        for member in net.nets[1:]:
            total += squared_errors(member, x)
        return total / len(net.nets)
    return (net.reconstruct(x) - x) ** 2


class WindowDetector(Estimator):
    """`WindowDetector(config, seed=0).fit(train).score(series)`; `config` is a DetectorConfig (or its
    dict form), the runtime settings (device, progress) are not saved with the model."""

    kind = KIND

    def __init__(self, config: DetectorConfig | dict[str, Any] | None = None, seed: int = 0, device: str = "auto",
                 progress: bool = False) -> None:
        self.config = from_dict(config) if isinstance(config, dict) else (config or DetectorConfig())
        self.seed, self.device, self.progress = seed, device, progress

    # ------------------------------------------------------------------------------- shorthands
    @property
    def window(self) -> int:
        return self.config.window

    @property
    def context_rows(self) -> int:
        """Rows of history a new row's score depends on (besides itself)."""
        return self.window - 1 + self.config.scoring.smooth - 1

    # --------------------------------------------------------------------------------------- fit
    def fit(self, train: np.ndarray | Series, channel_names: list[str] | None = None,
            time_col: str | None = None) -> WindowDetector:
        cfg = self.config
        cfg.validate()
        values = train.values if isinstance(train, Series) else np.asarray(train, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        if not np.isfinite(values).all():
            raise UserError("training data has missing or infinite values; fill gaps first")
        if len(values) < self.window + 1:
            raise UserError(f"training data has {len(values)} rows; it needs more than the window ({self.window})")
        picked = cfg.scoring.score_channels
        if picked is not None and not all(0 <= i < values.shape[1] for i in picked):
            raise UserError(f"the score channels {list(picked)} (positions, from 0) need more than the data's "
                            f"{values.shape[1]} channel(s); pick the columns with --score-columns")
        self.channel_names_ = list(train.channels) if isinstance(train, Series) else (
            channel_names or [f"ch{i}" for i in range(values.shape[1])])
        self.time_col_ = time_col
        self.scaler_ = Scaler().fit(values)
        scaled = self.scaler_.transform(values)
        windows = torch.from_numpy(np.ascontiguousarray(sliding_windows(scaled, self.window, cfg.stride)))
        variant = get_variant(cfg.network.kind)
        modules, nets, histories = [], [], []
        for k in range(cfg.network.ensemble):  # member k: seed + k
            torch.manual_seed(self.seed + k)
            modules.append(variant.build(cfg.network, values.shape[1], self.window))
            nets.append(as_window_model(variant, modules[-1], values.shape[1], self.window, cfg.network.center))
            histories.append(self._train(nets[-1], windows, self.seed + k))
            nets[-1].eval()
        self.module_ = modules[0] if len(modules) == 1 else ModuleBundle.of(modules)
        self._net = nets[0] if len(nets) == 1 else WindowEnsemble(nets)
        self._placed = None
        # an ensemble's history holds one final training loss per member (as recae's stack does)
        self.history_: History = histories[0] if len(histories) == 1 else History(
            train_loss=[h.train_loss[-1] for h in histories], seconds=sum(h.seconds for h in histories))
        train_scores = self._score_scaled(scaled, "causal").score
        finite = train_scores[np.isfinite(train_scores)]
        th = cfg.threshold
        self.threshold_ = Threshold(name=th.rule, q=th.q, rate=th.contamination, risk=th.risk,
                                    margin=th.margin).fit(finite)
        self.calibrator_ = TailCalibrator().fit(finite)
        self.alerting_ = fit_alerting(cfg.alerting, self.threshold_.threshold_, finite, len(values))
        self.train_stats_ = {"rows": int(len(values)), "windows": int(len(windows)),
                             "score_median": float(np.median(finite)), "score_max": float(finite.max())}
        return self

    def _train(self, net: nn.Module, windows: torch.Tensor, seed: int) -> History:
        cfg = self.config
        objective = ReconstructionObjective(
            corruption=Corruption(cfg.network.denoise, cfg.network.noise_level) if cfg.network.denoise else None,
            beta=BetaSchedule(beta=1e-3, warmup_epochs=max(1, cfg.training.epochs // 4)))
        train_cfg = dataclasses.replace(
            cfg.training, val_fraction=cfg.training.val_fraction if len(windows) >= 20 else 0.0, seed=seed,
            device=self.device, progress=self.progress, description="tsad train")
        return Trainer(train_cfg, objective).fit(net, windows)

    # ------------------------------------------------------------------------------------ score
    def _placed_net(self) -> torch.device:
        """Put the network on `self.device` in eval mode, once per device: a stream scores many small
        batches, and moving the module each time costs about a tenth of its time."""
        placed = getattr(self, "_placed", None)
        if placed is None or placed[0] != self.device or self._net.training:
            device = resolve_device(self.device)
            self._net.to(device).eval()
            self._placed = (self.device, device)
        return self._placed[1]

    @torch.no_grad()
    def _window_errors(self, scaled: np.ndarray, batch: int = 2048) -> np.ndarray:
        """Squared errors of every stride-1 window: (n_windows, channels, window) float32."""
        device = self._placed_net()
        views = sliding_windows(scaled, self.window, 1)
        out = np.empty(views.shape, dtype=np.float32)
        for start in range(0, len(views), batch):
            chunk = np.ascontiguousarray(views[start:start + batch])
            x = torch.from_numpy(chunk if chunk.flags.writeable else chunk.copy()).to(device)
            out[start:start + batch] = squared_errors(self._net, x).cpu().numpy()
        return out

    def _score_scaled(self, scaled: np.ndarray, mode: str) -> Scores:
        n, c = scaled.shape
        scoring = self.config.scoring
        t0 = time.perf_counter()
        per_channel = np.full((n, c), np.nan)
        if n >= self.window:
            err = self._window_errors(scaled)
            if mode == "causal":
                tail = scoring.causal_tail or self.window
                per_channel[self.window - 1:] = err[:, :, -tail:].mean(axis=2)
            elif mode == "offline":
                total = np.zeros((n, c))
                count = np.zeros(n)
                for k in range(self.window):
                    total[k:k + len(err)] += err[:, :, k]
                    count[k:k + len(err)] += 1
                per_channel = total / count[:, None]
            else:
                raise UserError(f"unknown mode {mode!r}; choose causal or offline")
            if scoring.smooth > 1:
                per_channel = trailing_mean(per_channel, scoring.smooth)
        if scoring.score_channels is not None:
            keep = np.zeros(c, dtype=bool)
            keep[list(scoring.score_channels)] = True
            per_channel = np.where(keep[None, :], per_channel, 0.0)
            score = per_channel[:, keep].mean(axis=1)
            c = int(keep.sum())
        else:
            score = per_channel.mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            contributions = per_channel / np.where(score > 0, score * c, 1.0)[:, None]
        elapsed = time.perf_counter() - t0
        return Scores(score, np.zeros(n), np.zeros(n, dtype=bool), contributions, n / max(elapsed, 1e-9))

    def score(self, data: np.ndarray | Series, mode: str = "causal") -> Scores:
        """Per-timestamp anomaly scores (higher = more anomalous), probabilities and alerts, for a
        series from its first row (the saved alerting starts fresh)."""
        values = self._values(data)
        result, _ = self.alert(self.raw_score(values, mode), values, self.alerting_.fresh_state())
        return result

    def raw_score(self, data: np.ndarray | Series, mode: str = "causal") -> Scores:
        """Scores and probabilities only; `is_anomaly` is left False (see `alert`)."""
        values = self._values(data)
        result = self._score_scaled(self.scaler_.transform(values), mode)
        result.score_prob = np.nan_to_num(self.calibrator_.transform(result.score), nan=0.0)
        return result

    def alert(self, result: Scores, values: np.ndarray, state: dict[str, Any]) -> tuple[Scores, dict[str, Any]]:
        """Apply the saved alerting to consecutive rows after `state` (tsad.alerting): sets
        `alert_score` and `is_anomaly`, returns the state for the rows that follow."""
        alert_score, flags, state = self.alerting_.apply(
            result.score, self.calibrator_.surprise(result.score), np.asarray(values, dtype=float), state)
        result.is_anomaly = np.asarray(flags, dtype=bool)
        result.alert_score = None if self.alerting_.mode == "threshold" else alert_score  # there: the score itself
        return result, state

    def _values(self, data: np.ndarray | Series) -> np.ndarray:
        self.check_fitted()
        values = data.values if isinstance(data, Series) else np.asarray(data, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        if values.shape[1] != len(self.channel_names_):
            raise UserError(f"data has {values.shape[1]} value column(s); the model was trained on "
                            f"{len(self.channel_names_)} ({', '.join(self.channel_names_)})")
        return values

    # ------------------------------------------------------------------------------ persistence
    def _fitted_state(self) -> FittedState:
        extras = {"config_version": CONFIG_VERSION, "scaler": self.scaler_.to_dict(), "channels": self.channel_names_,
                  "time_col": self.time_col_, "threshold": self.threshold_.to_dict(),
                  "calibrator": self.calibrator_.to_dict(), "alerting": self.alerting_.to_dict(),
                  "train_stats": self.train_stats_,
                  "history": self.history_.to_dict()}
        return FittedState(self.module_, extras)

    @classmethod
    def _params_from_saved(cls, extras: dict[str, Any]) -> dict[str, Any]:
        version = extras.get("config_version", 1)
        params = dict(extras["params"])
        if version == 1:  # the flat keywords of WindowDetector before nested configs
            seed = params.pop("seed", 0)
            return {"config": from_flat_v1(params), "seed": seed}
        if version == 2:  # before centred windows and spot alerting were the defaults
            return {**params, "config": from_saved_v2(params["config"])}
        if version != CONFIG_VERSION:
            raise ArtifactError(f"detector config version {version} is newer than this version reads "
                                f"({CONFIG_VERSION}); upgrade ae-toolkit")
        return params

    def _restore(self, artifact: Artifact) -> None:
        ex = artifact.extras
        self.module_ = artifact.model.to(resolve_device(self.device))
        self.scaler_ = Scaler.from_dict(ex["scaler"])
        self.channel_names_ = list(ex["channels"])
        self.time_col_ = ex.get("time_col")
        self.threshold_ = Threshold.from_dict(ex["threshold"])
        self.calibrator_ = TailCalibrator.from_dict(ex["calibrator"])
        self.alerting_ = alerting_from_dict(self.config.alerting, self.threshold_.threshold_, ex.get("alerting"))
        self.train_stats_ = ex.get("train_stats", {})
        self.history_ = History.from_dict(ex["history"]) if "history" in ex else History()
        members = list(self.module_.members) if isinstance(self.module_, ModuleBundle) else [self.module_]
        if len(members) != self.config.network.ensemble:
            raise ArtifactError(f"the model holds {len(members)} network(s) where its config's ensemble says "
                                f"{self.config.network.ensemble}")
        nets = [as_window_model(get_variant(self.config.network.kind), m, len(self.channel_names_), self.window,
                                self.config.network.center) for m in members]
        self._net = nets[0] if len(nets) == 1 else WindowEnsemble(nets)
        self._placed = None

    def _self_check(self) -> None:
        check_field_types(self.config, "config")
        self.config.validate()
        c = len(self.channel_names_)
        if not all(isinstance(n, str) for n in self.channel_names_):
            raise UserError("channel names must be strings")
        for name, arr in (("scaler mean", self.scaler_.mean), ("scaler std", self.scaler_.std)):
            arr = np.asarray(arr)
            if arr.shape != (c,) or arr.dtype.kind not in "fiu" or not np.isfinite(arr).all():
                raise UserError(f"{name} does not fit the model's {c} channel(s)")
        if not (np.asarray(self.scaler_.std) > 0).all():
            raise UserError("scaler std must be positive")
        picked = self.config.scoring.score_channels
        if picked is not None and not all(0 <= i < c for i in picked):
            raise UserError(f"score_channels {list(picked)} name channels the model does not have ({c})")
        self.threshold_.check()
        self.calibrator_.check()
        # a forward pass over a few rows at the training means: what survives the checks above must run
        self.score(np.tile(np.asarray(self.scaler_.mean, dtype=float), (self.window + self.config.scoring.smooth, 1)))
