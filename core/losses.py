"""Losses, chosen by name in a config rather than by subclassing the trainer.

All reductions return a scalar; they compute in float32 even under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.errors import UserError


def mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return F.mse_loss(recon.float(), target.float())


def bce(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on outputs already in [0, 1] (sigmoid decoders), clamped for safety."""
    p = recon.float().clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(p, target.float())


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over observed entries only (mask, or target != 0 for ratings where 0 means unrated)."""
    if mask is None:
        mask = target != 0
    mask = mask.to(recon.dtype).float()
    n = mask.sum().clamp_min(1.0)
    return (((recon.float() - target.float()) ** 2) * mask).sum() / n


def multinomial_nll(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mult-VAE's likelihood: -sum_i x_i log softmax(logits)_i, averaged over the batch."""
    return -(F.log_softmax(logits.float(), dim=1) * target.float()).sum(dim=1).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dimensions, averaged over the batch; always >= 0."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": mse,
    "bce": bce,
    "masked_mse": masked_mse,
    "multinomial": multinomial_nll,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


@dataclass
class BetaSchedule:
    """beta-VAE weight with optional linear warm-up (KL annealing): beta * min(1, epoch / warmup)."""

    beta: float = 1.0
    warmup_epochs: float = 0.0

    def __call__(self, epoch: float) -> float:
        if self.warmup_epochs <= 0:
            return self.beta
        return self.beta * min(1.0, epoch / self.warmup_epochs)
