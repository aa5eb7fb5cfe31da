"""WindowDetector: a sliding-window autoencoder anomaly detector, estimator-style.

Train on normal data; score every timestamp by reconstruction error; alert above a threshold fitted
on training scores; map scores to [0, 1] with a tail calibrator fitted on training scores.

Scoring modes:
- causal: the score at t uses only rows ≤ t: the mean squared error of the last `causal_tail`
  points of the window ending at t (the whole window by default). The first `window − 1` rows
  have no complete window and get NaN (probability 0, never an alert).
- offline: each point's squared error averaged over every window covering it.
`smooth` > 1 then averages each score over the trailing `smooth` rows (still causal; telemanom
smooths its errors the same way), so a lasting deviation outranks a one-row spike. Streams keep
`context_rows` rows of history to reproduce batch scores exactly.
Per-channel contributions are each channel's share of the score, so an alert names the sensors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.artifact import load_artifact, save_artifact
from core.conv1d import Conv1dAE, Conv1dConfig
from core.corruption import CORRUPTIONS, Corruption
from core.dense import DenseAE, DenseConfig
from core.device import resolve_device
from core.errors import UserError
from core.losses import BetaSchedule
from core.models import conv1d_vae
from core.objective import ReconstructionObjective
from core.train import History, TrainConfig, Trainer
from tsad.datasets import Series
from tsad.thresholds import THRESHOLDS, TailCalibrator, Threshold
from tsad.windows import Scaler, sliding_windows

log = logging.getLogger(__name__)

KIND = "tsad.WindowDetector"
MODELS = ("conv", "dense", "vae")


@dataclass
class Scores:
    score: np.ndarray  # (n,)
    score_prob: np.ndarray  # (n,) in [0, 1]
    is_anomaly: np.ndarray  # (n,) bool
    contributions: np.ndarray  # (n, channels), rows sum to 1 where scored
    points_per_second: float = 0.0


def trailing_mean(x: np.ndarray, span: int) -> np.ndarray:
    """Mean of each row and the span − 1 before it, along axis 0; NaN until span finite rows exist."""
    frame = pd.DataFrame(np.asarray(x, dtype=float).reshape(len(x), -1))
    return frame.rolling(span, min_periods=span).mean().to_numpy().reshape(np.shape(x))


class _Flatten(nn.Module):
    """Lets a DenseAE read (batch, channels, length) windows."""

    def __init__(self, inner: DenseAE, shape: tuple[int, int]) -> None:
        super().__init__()
        self.inner, self.shape = inner, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.flatten(1)).view(-1, *self.shape)


class WindowDetector:
    def __init__(self, window: int = 288, stride: int = 1, model: str = "conv", channels: tuple[int, ...] = (32, 16),
                 kernel_size: int = 7, dropout: float = 0.2, latent_size: int = 16, hidden: tuple[int, ...] = (128, 32),
                 denoise: str | None = None, noise_level: float = 0.1, epochs: int = 50, batch_size: int = 128,
                 lr: float = 1e-3, val_fraction: float = 0.1, patience: int | None = 5, threshold: str = "max",
                 threshold_q: float = 99.0, contamination: float = 0.01, risk: float = 1e-3,
                 threshold_margin: float = 1.0, causal_tail: int | None = None,
                 score_channels: tuple[int, ...] | None = None, smooth: int = 1, device: str = "auto", seed: int = 0,
                 progress: bool = False) -> None:
        self.window, self.stride, self.model = window, stride, model
        self.channels, self.kernel_size, self.dropout = tuple(channels), kernel_size, dropout
        self.latent_size, self.hidden = latent_size, tuple(hidden)
        self.denoise, self.noise_level = denoise, noise_level
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.val_fraction, self.patience = val_fraction, patience
        self.threshold, self.threshold_q, self.contamination, self.risk = threshold, threshold_q, contamination, risk
        self.threshold_margin, self.causal_tail = threshold_margin, causal_tail
        # channels whose error makes the score (all by default); the others are context only, as
        # MSL's command channels are for its telemetry channel
        self.score_channels = tuple(score_channels) if score_channels is not None else None
        self.smooth = smooth
        self.device, self.seed, self.progress = device, seed, progress

    # ------------------------------------------------------------------ parameters and the network
    def get_params(self) -> dict[str, Any]:
        keys = ("window", "stride", "model", "channels", "kernel_size", "dropout", "latent_size", "hidden", "denoise",
                "noise_level", "epochs", "batch_size", "lr", "val_fraction", "patience", "threshold", "threshold_q",
                "contamination", "risk", "threshold_margin", "causal_tail", "score_channels", "smooth", "seed")
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in ((k, getattr(self, k)) for k in keys)}

    def _validate(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.threshold not in THRESHOLDS:
            raise UserError(f"unknown threshold {self.threshold!r}; choose one of {', '.join(THRESHOLDS)}")
        if self.denoise is not None and self.denoise not in CORRUPTIONS:
            raise UserError(f"unknown --denoise {self.denoise!r}; choose one of {', '.join(CORRUPTIONS)}")
        if self.window < 4:
            raise UserError("--window must be at least 4")
        if self.epochs < 1:
            raise UserError("--epochs must be at least 1")
        if self.smooth < 1:
            raise UserError("--smooth must be at least 1")
        if self.causal_tail is not None and not 1 <= self.causal_tail <= self.window:
            raise UserError("causal_tail must be between 1 and the window length")

    @property
    def context_rows(self) -> int:
        """Rows of history a new row's score depends on (besides itself)."""
        return self.window - 1 + self.smooth - 1

    def _build(self, n_channels: int) -> nn.Module:
        if self.model == "conv":
            return Conv1dAE(Conv1dConfig(in_channels=n_channels, length=self.window, channels=list(self.channels),
                                         kernel_size=self.kernel_size, dropout=self.dropout))
        if self.model == "vae":
            return conv1d_vae(n_channels, self.window, self.latent_size, channels=list(self.channels),
                              kernel_size=self.kernel_size, dropout=self.dropout)
        return DenseAE(DenseConfig(input_dim=n_channels * self.window, hidden=list(self.hidden[:-1]),
                                   code_size=self.hidden[-1], dropout=self.dropout))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.model == "dense":
            return self.module_(x.flatten(1)).view_as(x)
        return self.module_.reconstruct(x)

    # --------------------------------------------------------------------------------------- fit
    def fit(self, train: np.ndarray | Series, channel_names: list[str] | None = None,
            time_col: str | None = None) -> WindowDetector:
        self._validate()
        values = train.values if isinstance(train, Series) else np.asarray(train, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        if not np.isfinite(values).all():
            raise UserError("training data has missing or infinite values; fill gaps first")
        if len(values) < self.window + 1:
            raise UserError(f"training data has {len(values)} rows; it needs more than the window ({self.window})")
        self.channel_names_ = list(train.channels) if isinstance(train, Series) else (
            channel_names or [f"ch{i}" for i in range(values.shape[1])])
        self.time_col_ = time_col
        self.scaler_ = Scaler().fit(values)
        scaled = self.scaler_.transform(values)
        windows = torch.from_numpy(np.ascontiguousarray(sliding_windows(scaled, self.window, self.stride)))
        torch.manual_seed(self.seed)
        self.module_ = self._build(values.shape[1])
        net: nn.Module = self.module_
        if self.model == "dense":  # DenseAE reads flattened windows
            net = _Flatten(self.module_, (values.shape[1], self.window))
        objective = ReconstructionObjective(
            corruption=Corruption(self.denoise, self.noise_level) if self.denoise else None,
            beta=BetaSchedule(beta=1e-3, warmup_epochs=max(1, self.epochs // 4)))
        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                          val_fraction=self.val_fraction if len(windows) >= 20 else 0.0, patience=self.patience,
                          seed=self.seed, device=self.device, progress=self.progress, description="tsad train")
        self.history_: History = Trainer(cfg, objective).fit(net, windows)
        self.module_.eval()
        train_scores = self._score_scaled(scaled, "causal").score
        finite = train_scores[np.isfinite(train_scores)]
        self.threshold_ = Threshold(name=self.threshold, q=self.threshold_q, rate=self.contamination, risk=self.risk,
                                    margin=self.threshold_margin).fit(finite)
        self.calibrator_ = TailCalibrator().fit(finite)
        self.train_stats_ = {"rows": int(len(values)), "windows": int(len(windows)),
                             "score_median": float(np.median(finite)), "score_max": float(finite.max())}
        return self

    # ------------------------------------------------------------------------------------ score
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise UserError("the detector is not fitted")

    @torch.no_grad()
    def _window_errors(self, scaled: np.ndarray, batch: int = 2048) -> np.ndarray:
        """Squared errors of every stride-1 window: (n_windows, channels, window) float32."""
        device = resolve_device(self.device)
        self.module_.to(device).eval()
        views = sliding_windows(scaled, self.window, 1)
        out = np.empty(views.shape, dtype=np.float32)
        for start in range(0, len(views), batch):
            chunk = np.ascontiguousarray(views[start:start + batch])
            x = torch.from_numpy(chunk if chunk.flags.writeable else chunk.copy()).to(device)
            out[start:start + batch] = ((self._forward(x) - x) ** 2).cpu().numpy()
        return out

    def _score_scaled(self, scaled: np.ndarray, mode: str) -> Scores:
        n, c = scaled.shape
        t0 = time.perf_counter()
        per_channel = np.full((n, c), np.nan)
        if n >= self.window:
            err = self._window_errors(scaled)
            if mode == "causal":
                tail = self.causal_tail or self.window
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
            if self.smooth > 1:
                per_channel = trailing_mean(per_channel, self.smooth)
        if self.score_channels is not None:
            keep = np.zeros(c, dtype=bool)
            keep[list(self.score_channels)] = True
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
        """Per-timestamp anomaly scores (higher = more anomalous), probabilities and alerts."""
        self._check_fitted()
        values = data.values if isinstance(data, Series) else np.asarray(data, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        if values.shape[1] != len(self.channel_names_):
            raise UserError(f"data has {values.shape[1]} value column(s); the model was trained on "
                            f"{len(self.channel_names_)} ({', '.join(self.channel_names_)})")
        result = self._score_scaled(self.scaler_.transform(values), mode)
        prob = self.calibrator_.transform(result.score)
        result.score_prob = np.nan_to_num(prob, nan=0.0)
        result.is_anomaly = np.nan_to_num(result.score, nan=-np.inf) > self.threshold_.threshold_
        return result

    def detect(self, data: np.ndarray | Series, mode: str = "causal") -> np.ndarray:
        return self.score(data, mode).is_anomaly

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        self._check_fitted()
        extras = {"params": self.get_params(), "scaler": self.scaler_.to_dict(), "channels": self.channel_names_,
                  "time_col": self.time_col_, "threshold": self.threshold_.to_dict(),
                  "calibrator": self.calibrator_.to_dict(), "train_stats": self.train_stats_,
                  "history": self.history_.to_dict()}
        return save_artifact(path, self.module_, kind=KIND, extras=extras, metrics=metrics or {})

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> WindowDetector:
        art = load_artifact(path, expected_kind=KIND)
        ex = art.extras
        try:
            det = cls(**ex["params"], device=device)
            det.module_ = art.model.to(resolve_device(device))
            det.scaler_ = Scaler.from_dict(ex["scaler"])
            det.channel_names_ = list(ex["channels"])
            det.time_col_ = ex.get("time_col")
            det.threshold_ = Threshold.from_dict(ex["threshold"])
            det.calibrator_ = TailCalibrator.from_dict(ex["calibrator"])
            det.train_stats_ = ex.get("train_stats", {})
            det.history_ = History.from_dict(ex["history"]) if "history" in ex else History()
        except (KeyError, TypeError) as exc:
            from core.errors import ArtifactError

            raise ArtifactError(f"{path} is not a valid detector: missing {exc}") from None
        return det
