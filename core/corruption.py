"""Denoising corruptions: the model sees a corrupted input and is trained to give back the clean one."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import UserError

CORRUPTIONS = ("gaussian", "mask", "salt_pepper")


@dataclass
class Corruption:
    """`level` is the noise std for gaussian, the drop probability for mask (dropout-style,
    zeroed entries, no rescaling) and the fraction of entries flipped to low/high for salt_pepper."""

    kind: str = "gaussian"
    level: float = 0.1
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CORRUPTIONS:
            raise UserError(f"unknown corruption {self.kind!r}; choose one of {', '.join(CORRUPTIONS)}")
        if self.level < 0 or (self.kind != "gaussian" and self.level > 1):
            raise UserError(f"corruption level {self.level} out of range for {self.kind}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.level == 0:
            return x
        if self.kind == "gaussian":
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            return x + self.level * noise
        u = torch.rand(x.shape, generator=generator).to(x.device)
        if self.kind == "mask":
            return x.masked_fill(u < self.level, 0.0)
        salt = torch.rand(x.shape, generator=generator).to(x.device) < 0.5
        out = x.clone()
        hit = u < self.level
        out[hit & salt] = self.high
        out[hit & ~salt] = self.low
        return out
