"""The training objective of an autoencoder, configured rather than subclassed.

One callable covers plain, denoising (corrupt the input, clean target), sparse (L1 on the code)
and variational (KL with a beta schedule) training. Apps with special batches (ratings with a
mask, say) pass batches as tuples `(inputs, target[, mask])` and pick the loss by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.corruption import Corruption
from core.losses import BetaSchedule, get_loss, kl_divergence
from core.variational import VAEOutput


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A batch is a tensor x (target x), or (x, target), or (x, target, mask)."""
    if isinstance(batch, torch.Tensor):
        return batch, batch, None
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1], None
        return batch[0], batch[1], batch[2]
    raise TypeError(f"unsupported batch type {type(batch).__name__}")


@dataclass
class ReconstructionObjective:
    loss: str = "mse"
    corruption: Corruption | None = None
    l1_code: float = 0.0
    beta: BetaSchedule = field(default_factory=BetaSchedule)

    def __post_init__(self) -> None:
        self._loss_fn = get_loss(self.loss)

    def __call__(self, model: nn.Module, batch: Any, epoch: float, training: bool) -> tuple[torch.Tensor, dict]:
        x, target, mask = unpack_batch(batch)
        if training and self.corruption is not None:
            x = self.corruption(x)
        parts: dict[str, float] = {}
        if self.l1_code > 0:
            code = model.encode(x)
            out = model.decode(code)
        else:
            code = None
            out = model(x)
        if isinstance(out, VAEOutput):
            recon_loss = self._loss_fn(out.recon, target, mask)
            kl = kl_divergence(out.mu, out.logvar)
            beta = self.beta(epoch)
            total = recon_loss + beta * kl
            parts["kl"] = float(kl.detach())
        else:
            recon_loss = self._loss_fn(out, target, mask)
            total = recon_loss
        if code is not None:
            penalty = code.float().abs().mean()
            total = total + self.l1_code * penalty
            parts["l1"] = float(penalty.detach())
        parts["recon"] = float(recon_loss.detach())
        return total, parts
