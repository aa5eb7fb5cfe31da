"""VariationalAE: a VAE head (mean, log-variance, reparameterisation) on a dense or conv body.

The body is any autoencoder with `encode`/`decode`; its code (flattened) feeds two linear heads,
and a linear layer maps a latent sample back to the body's code before the body decodes it.
`forward` returns a VAEOutput so the loss can add the KL term; `reconstruct` uses the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from core.errors import UserError
from core.layers import ConfiguredModule
from core.specs import model_from_spec, register_model


class VAEOutput(NamedTuple):
    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor


@dataclass
class VAEConfig:
    """`body` is a model spec ({"class": ..., "config": {...}}) as written by core.models."""

    body: dict[str, Any]
    latent_size: int = 8

    def validate(self) -> None:
        if self.latent_size < 1:
            raise UserError("latent_size must be positive")


class VariationalAE(ConfiguredModule):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.body = model_from_spec(config.body)
        feat = self.body.code_dim
        self.mu_head = nn.Linear(feat, config.latent_size)
        self.logvar_head = nn.Linear(feat, config.latent_size)
        self.from_latent = nn.Linear(config.latent_size, feat)

    @property
    def code_dim(self) -> int:
        return self.config.latent_size

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body.encode(x).flatten(1)
        return self.mu_head(h), self.logvar_head(h).clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the deterministic code used for plots and scoring."""
        return self.encode_stats(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.body.decode(self.from_latent(z))

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode_stats(x)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return VAEOutput(self.decode(z), mu, logvar)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode_stats(x)
        return self.decode(mu)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate n new inputs by decoding draws from the standard normal prior."""
        if n < 1:
            raise UserError("sample needs n >= 1")
        device = self.mu_head.weight.device
        z = torch.randn(n, self.config.latent_size, generator=generator).to(device)
        return self.decode(z)


register_model(VariationalAE, VAEConfig)
