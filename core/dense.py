"""DenseAE: a fully connected autoencoder of any depth (one hidden layer is the vanilla case)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.errors import UserError
from core.layers import ConfiguredModule, activation
from core.specs import register_model


@dataclass
class DenseConfig:
    """Layer widths run input → hidden... → code, and the decoder mirrors them unless given.

    `out_activation` shapes the output range (sigmoid for [0, 1] pixels, None for real values);
    `dropout` applies after each hidden layer, `code_dropout` on the code (as in DeepRec).
    """

    input_dim: int
    code_size: int = 8
    hidden: list[int] = field(default_factory=list)
    decoder_hidden: list[int] | None = None
    activation: str = "relu"
    code_activation: str | None = None
    out_activation: str | None = None
    dropout: float = 0.0
    input_dropout: float = 0.0
    code_dropout: float = 0.0

    def validate(self) -> None:
        if self.input_dim < 1 or self.code_size < 1:
            raise UserError("input_dim and code_size must be positive")
        if any(w < 1 for w in self.hidden):
            raise UserError("hidden layer widths must be positive")
        for p in (self.dropout, self.input_dropout, self.code_dropout):
            if not 0.0 <= p < 1.0:
                raise UserError(f"dropout must be in [0, 1), got {p}")


def _mlp(widths: list[int], act: str, dropout: float, last_act: str | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        is_last = i == len(widths) - 2
        layers.append(activation(last_act if is_last else act))
        if dropout > 0 and not is_last:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class DenseAE(ConfiguredModule):
    """Encoder and decoder are plain MLPs; `encode`/`decode`/`forward` work on (batch, input_dim)."""

    def __init__(self, config: DenseConfig) -> None:
        super().__init__(config)
        dec_hidden = config.decoder_hidden if config.decoder_hidden is not None else config.hidden[::-1]
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else nn.Identity()
        self.encoder = _mlp([config.input_dim, *config.hidden, config.code_size], config.activation,
                            config.dropout, config.code_activation)
        self.code_dropout = nn.Dropout(config.code_dropout) if config.code_dropout > 0 else nn.Identity()
        self.decoder = _mlp([config.code_size, *dec_hidden, config.input_dim], config.activation,
                            config.dropout, config.out_activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.input_dropout(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.code_dropout(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction used for scoring (same call for every model kind)."""
        return self.forward(x)

    @property
    def code_dim(self) -> int:
        return self.config.code_size


register_model(DenseAE, DenseConfig)
