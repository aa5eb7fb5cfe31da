"""The detector's network variants as data: one registry entry per variant.

Each entry builds a `core` autoencoder for windows of shape (channels, window) from the network
config. Every variant is then driven the same way: the detector wraps a `flat_input` module in
`FlatWindows`, so every network's `forward` and `reconstruct` take and return (batch, channels,
window) and training and scoring share one forward path. Adding a variant = one `register_variant` call + its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import UserError

# The builders import torch lazily, so listing the variants (CLI --help) stays fast. A builder takes
# the network section of the detector config (tsad.config.NetworkConfig), the channels and the window.
NetworkConfig = Any
Module = Any  # a torch.nn.Module


@dataclass(frozen=True)
class Variant:
    name: str
    help: str
    build: Callable[[NetworkConfig, int, int], Module]  # (config, channels, window) -> module
    flat_input: bool = False  # the module reads windows flattened to channels * window


VARIANTS: dict[str, Variant] = {}


def register_variant(variant: Variant) -> None:
    VARIANTS[variant.name] = variant


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(VARIANTS)}") from None


def _conv(cfg: NetworkConfig, channels: int, window: int) -> Module:
    from core.conv1d import Conv1dAE, Conv1dConfig

    return Conv1dAE(Conv1dConfig(in_channels=channels, length=window, channels=list(cfg.channels),
                                 kernel_size=cfg.kernel_size, dropout=cfg.dropout))


def _vae(cfg: NetworkConfig, channels: int, window: int) -> Module:
    from core.models import conv1d_vae

    return conv1d_vae(channels, window, cfg.latent_size, channels=list(cfg.channels), kernel_size=cfg.kernel_size,
                      dropout=cfg.dropout)


def _dense(cfg: NetworkConfig, channels: int, window: int) -> Module:
    from core.dense import DenseAE, DenseConfig

    return DenseAE(DenseConfig(input_dim=channels * window, hidden=list(cfg.hidden[:-1]), code_size=cfg.hidden[-1],
                               dropout=cfg.dropout))


register_variant(Variant("conv", "1-D convolutional", _conv))
register_variant(Variant("dense", "dense, on the flattened window", _dense, flat_input=True))
register_variant(Variant("vae", "variational, convolutional body", _vae))
