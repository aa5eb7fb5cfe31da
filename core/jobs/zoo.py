"""The zoo: every autoencoder kind trained on scikit-learn's digits, beside PCA at the same code size.

Real data that ships with scikit-learn (1,797 8×8 images, pixels scaled to [0, 1]), one seeded
80/20 split, one table. It shows the library works end to end and that depth pays: a deep
autoencoder beats PCA's linear projection at code size 8.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.conv1d import Conv1dAE, Conv1dConfig
from core.corruption import Corruption
from core.dense import DenseAE, DenseConfig
from core.device import resolve_device, seed_everything
from core.errors import UserError
from core.jobs.atomic import atomic_write_text
from core.losses import BetaSchedule
from core.models import dense_vae
from core.objective import ReconstructionObjective
from core.train import History, TrainConfig, Trainer

log = logging.getLogger(__name__)

KINDS = ("vanilla", "deep", "conv", "denoising", "sparse", "vae")
DEEP_HIDDEN = [256, 128]
NOISE = 0.2


@dataclass
class ZooConfig:
    code_size: int = 8
    epochs: int = 150
    batch_size: int = 64
    lr: float = 2e-3
    device: str = "auto"
    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    progress: bool = False

    def validate(self) -> None:
        if self.code_size < 1:
            raise UserError(f"--code-size must be at least 1, got {self.code_size}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise UserError(f"unknown kind(s) {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")


def load_digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return train_test_split(x, digits.target, test_size=0.2, random_state=seed, stratify=digits.target)


def build(kind: str, code_size: int) -> tuple[nn.Module, ReconstructionObjective]:
    dense = dict(input_dim=64, code_size=code_size, out_activation="sigmoid")
    if kind == "vanilla":
        return DenseAE(DenseConfig(**dense)), ReconstructionObjective()
    if kind == "deep":
        return DenseAE(DenseConfig(hidden=DEEP_HIDDEN, **dense)), ReconstructionObjective()
    if kind == "conv":
        cfg = Conv1dConfig(in_channels=1, length=64, channels=[16, 32], kernel_size=5, stride=2,
                           dropout=0.0, out_activation="sigmoid", code_size=code_size)
        return Conv1dAE(cfg), ReconstructionObjective()
    if kind == "denoising":
        return (DenseAE(DenseConfig(hidden=DEEP_HIDDEN, **dense)),
                ReconstructionObjective(corruption=Corruption("gaussian", NOISE)))
    if kind == "sparse":
        return DenseAE(DenseConfig(hidden=DEEP_HIDDEN, **dense)), ReconstructionObjective(l1_code=1e-3)
    if kind == "vae":
        model = dense_vae(64, [*DEEP_HIDDEN, 64], code_size, out_activation="sigmoid")
        return model, ReconstructionObjective(beta=BetaSchedule(beta=0.002, warmup_epochs=20))
    raise UserError(f"unknown kind {kind!r}")


def _shape_for(kind: str, x: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.view(-1, 1, 64) if kind == "conv" else t


@torch.no_grad()
def _reconstruct(model: nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    model.eval()
    return model.reconstruct(x.to(device)).reshape(len(x), -1).cpu().numpy()


def run_zoo(out: str | Path, config: ZooConfig) -> dict[str, Any]:
    """Train every kind, write metrics.json and PNGs under `out`, return the metrics."""
    from sklearn.decomposition import PCA

    from core.jobs.plots import plot_latent, plot_loss_curves, plot_reconstructions

    config.validate()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    device = resolve_device(config.device)
    x_train, x_test, _, y_test = load_digits_split(config.seed)
    noise_gen = torch.Generator().manual_seed(config.seed + 1)
    x_test_noisy = Corruption("gaussian", NOISE)(torch.as_tensor(x_test), noise_gen).numpy()

    metrics: dict[str, Any] = {}
    histories: dict[str, History] = {}
    recon_rows: dict[str, np.ndarray] = {"input": x_test[:8]}
    vae_codes = None
    for kind in config.kinds:
        seed_everything(config.seed)
        model, objective = build(kind, config.code_size)
        train_cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                seed=config.seed, device=str(device), progress=config.progress,
                                description=f"zoo {kind:9s}")
        history = Trainer(train_cfg, objective).fit(model, _shape_for(kind, x_train))
        recon = _reconstruct(model, _shape_for(kind, x_test), device)
        entry: dict[str, Any] = {"test_mse": float(np.mean((recon - x_test) ** 2)), "code_size": config.code_size,
                                 "params": sum(p.numel() for p in model.parameters()),
                                 "train_seconds": round(history.seconds, 2), "epochs": len(history.train_loss)}
        if kind in ("deep", "denoising"):
            noisy = _reconstruct(model, _shape_for(kind, x_test_noisy), device)
            entry["noisy_test_mse"] = float(np.mean((noisy - x_test) ** 2))
        if kind == "sparse":
            with torch.no_grad():
                code = model.encode(torch.as_tensor(x_test).to(device)).cpu().numpy()
            entry["mean_abs_code"] = float(np.abs(code).mean())
        if kind == "vae":
            with torch.no_grad():
                vae_codes = model.encode(torch.as_tensor(x_test).to(device)).cpu().numpy()
        metrics[kind] = entry
        histories[kind] = history
        recon_rows[kind] = recon[:8]
        log.info("zoo %s: test mse %.5f", kind, entry["test_mse"])

    pca = PCA(n_components=config.code_size, random_state=config.seed).fit(x_train)
    pca_recon = pca.inverse_transform(pca.transform(x_test))
    metrics["pca"] = {"test_mse": float(np.mean((pca_recon - x_test) ** 2)), "code_size": config.code_size,
                      "noisy_test_mse": float(np.mean((pca.inverse_transform(pca.transform(x_test_noisy))
                                                       - x_test) ** 2))}
    recon_rows["pca"] = pca_recon[:8]

    out.mkdir(parents=True, exist_ok=True)
    summary = {"dataset": "sklearn digits (8x8, 1797 images), 80/20 split", "seed": config.seed,
               "device": str(device), "noise_std": NOISE, "models": metrics}
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2))
    plot_reconstructions(recon_rows, out / "reconstructions.png", image_shape=(8, 8),
                         title=f"digits: test inputs and reconstructions (code size {config.code_size})")
    plot_loss_curves(histories, out / "loss_curves.png", title="zoo training loss")
    if vae_codes is not None:
        plot_latent(vae_codes, out / "vae_latent.png", labels=y_test, title="VAE latent means (test digits)")
    return summary
