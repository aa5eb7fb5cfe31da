"""PNG plots built on matplotlib Figures directly (Agg, no pyplot state), saved atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.jobs.atomic import atomic_path


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_figure(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_loss_curves(histories: dict[str, Any], path: str | Path, title: str = "loss") -> Path:
    """One line per run for training loss, dashed for validation; accepts History objects or dicts."""
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    for name, h in histories.items():
        d = h if isinstance(h, dict) else h.to_dict()
        (line,) = ax.plot(np.arange(1, len(d["train_loss"]) + 1), d["train_loss"], label=f"{name} train")
        if d.get("val_loss"):
            ax.plot(np.arange(1, len(d["val_loss"]) + 1), d["val_loss"], "--", color=line.get_color(),
                    label=f"{name} val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def plot_reconstructions(rows: dict[str, np.ndarray], path: str | Path, image_shape: Sequence[int] | None = None,
                         n: int = 8, title: str = "inputs and reconstructions") -> Path:
    """A grid: one row per named array (input first, then each model's reconstruction), n samples.

    With `image_shape` samples are drawn as images, otherwise as line plots (time-series windows).
    """
    names = list(rows)
    n = min(n, min(len(a) for a in rows.values()))
    fig = _figure(1.3 * n, 1.3 * len(names) + 0.4)
    axes = fig.subplots(len(names), n, squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            ax = axes[r][c]
            sample = np.asarray(rows[name][c])
            if image_shape is not None:
                ax.imshow(sample.reshape(image_shape), cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.plot(sample.reshape(-1 if sample.ndim == 1 else sample.shape[0], -1).T, lw=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def build_latent_figure(codes: np.ndarray, labels: np.ndarray | None = None, title: str = "latent space") -> Any:
    """2-D scatter of codes as a Figure: the two dimensions (axes z1, z2) when the codes have two, a
    PCA projection (axes PC1, PC2 with their share of the variance; the title says so) when wider,
    z1 against the row index for one. The colour bar is labelled "label" when labels are given."""
    codes = np.asarray(codes, dtype=float)
    codes = codes.reshape(len(codes), -1)
    width = codes.shape[1]
    if width > 2:
        centred = codes - codes.mean(axis=0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        var = sv**2
        share = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
        xlabel, ylabel = f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%} of variance)"
        title = f"{title} (PCA projection of {width} dims)"
    elif width == 2:
        xy, xlabel, ylabel = codes, "z1", "z2"
    else:
        xy = np.column_stack([codes[:, 0] if width else np.zeros(len(codes)), np.arange(len(codes))])
        xlabel, ylabel = "z1", "sample"
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=6, cmap="tab10" if labels is not None else None)
    if labels is not None:
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def plot_latent(codes: np.ndarray, path: str | Path, labels: np.ndarray | None = None,
                title: str = "latent space") -> Path:
    """Write the latent scatter (see `build_latent_figure`) to `path` as a PNG, atomically."""
    return save_figure(build_latent_figure(codes, labels, title), path)
