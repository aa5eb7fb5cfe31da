"""Scaling fitted on training data only, and sliding windows as strided views (no copies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from core.errors import UserError

LIMIT = 1e12  # standard deviations; squared errors stay far below float32's 3.4e38


@dataclass
class Scaler:
    """Per-channel standardisation; statistics come from training data and travel with the model."""

    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, values: np.ndarray) -> Scaler:
        v = np.asarray(values, dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            self.mean = v.mean(axis=0)
            std = v.std(axis=0)
        if not (np.isfinite(self.mean).all() and np.isfinite(std).all()):
            raise UserError(f"training values are too large to scale (largest magnitude {np.abs(v).max():.3g}); "
                            "check the data or rescale it")
        self.std = np.where(std > 1e-8, std, 1.0)  # constant channels (MSL commands) stay as offsets
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardised float32 values, clipped to ±LIMIT standard deviations: a reading that far out
        (1e308, say) still scores as extreme instead of overflowing into NaN, which would silence the
        next `window` rows."""
        if self.mean is None:
            raise UserError("scaler is not fitted")
        with np.errstate(over="ignore", invalid="ignore"):
            z = (np.asarray(values, dtype=float) - self.mean) / self.std
        return np.clip(z, -LIMIT, LIMIT).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": np.asarray(self.mean).tolist(), "std": np.asarray(self.std).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(np.asarray(d["mean"], dtype=float), np.asarray(d["std"], dtype=float))


def sliding_windows(values: np.ndarray, length: int, stride: int = 1) -> np.ndarray:
    """(n, channels) → (n_windows, channels, length) view; window i covers rows i*stride … +length-1."""
    v = np.asarray(values)
    if v.ndim == 1:
        v = v[:, None]
    if length < 2:
        raise UserError("window length must be at least 2")
    if stride < 1:
        raise UserError("stride must be at least 1")
    if len(v) < length:
        raise UserError(f"series of {len(v)} rows is shorter than the window ({length})")
    return sliding_window_view(v, length, axis=0)[::stride]
