"""Conv1dAE: strided Conv1d down, ConvTranspose1d up, for windows shaped (channels, length).

The decoder's output padding is computed from the encoder's lengths, so the output length always
equals the input length, odd lengths included; a final crop guards even kernel sizes.

In eval mode on CPU (scoring, plots) the encoder and decoder run the same layers as 2-D
convolutions on channels-last tensors of height 1, with ReLU in place: oneDNN's 1-D transposed
convolution takes a slow path (5x slower than the 2-D channels-last one for the default decoder),
and a live monitor scores a micro-batch of windows every few records, so this was most of its
latency (the default network on 32 windows of 288: about 5 ms → 1.8 ms on one thread). Same
weights, same arithmetic up to the order of float32 sums (differences of about 1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.errors import UserError
from core.layers import ConfiguredModule, activation
from core.specs import register_model


@dataclass
class Conv1dConfig:
    """Defaults follow the Keras timeseries example: Conv1D(32, k7, s2) → Conv1D(16, k7, s2).

    `code_size` adds an optional dense bottleneck after the convolutions (a vector code);
    without it the code is the last feature map, shape (channels[-1], reduced length).
    """

    in_channels: int
    length: int
    channels: list[int] = field(default_factory=lambda: [32, 16])
    kernel_size: int = 7
    stride: int = 2
    dropout: float = 0.2
    activation: str = "relu"
    out_activation: str | None = None
    code_size: int | None = None

    def validate(self) -> None:
        if self.in_channels < 1 or self.length < 1:
            raise UserError("in_channels and length must be positive")
        if not self.channels or any(c < 1 for c in self.channels):
            raise UserError("channels must be a non-empty list of positive widths")
        if self.kernel_size < 1 or self.stride < 1:
            raise UserError("kernel_size and stride must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.code_size is not None and self.code_size < 1:
            raise UserError("code_size must be positive")


class Conv1dAE(ConfiguredModule):
    def __init__(self, config: Conv1dConfig) -> None:
        super().__init__(config)
        k, s, pad = config.kernel_size, config.stride, config.kernel_size // 2
        lengths = [config.length]
        widths = [config.in_channels, *config.channels]
        enc: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            enc += [nn.Conv1d(a, b, k, stride=s, padding=pad), activation(config.activation)]
            if config.dropout > 0 and i == 0:
                enc.append(nn.Dropout(config.dropout))
            lengths.append((lengths[-1] + 2 * pad - k) // s + 1)
        if lengths[-1] < 1:
            raise UserError(f"window length {config.length} is too short for {len(config.channels)} "
                            f"stride-{s} convolutions")
        self.encoder = nn.Sequential(*enc)
        self.feature_shape = (widths[-1], lengths[-1])
        flat = widths[-1] * lengths[-1]
        if config.code_size is not None:
            self.to_code: nn.Module = nn.Linear(flat, config.code_size)
            self.from_code: nn.Module = nn.Sequential(nn.Linear(config.code_size, flat),
                                                      activation(config.activation))
        else:
            self.to_code = nn.Identity()
            self.from_code = nn.Identity()
        dec: list[nn.Module] = []
        rev = config.channels[::-1]  # transposed layer i maps rev[i-1] -> rev[i], as in the Keras example
        for i in range(len(rev)):
            l_in, target = lengths[-1 - i], lengths[-2 - i]
            out_pad = min(max(target - ((l_in - 1) * s - 2 * pad + k), 0), s - 1)
            dec += [nn.ConvTranspose1d(rev[max(i - 1, 0)], rev[i], k, stride=s, padding=pad,
                                       output_padding=out_pad),
                    activation(config.activation)]
            if config.dropout > 0 and i == 0:
                dec.append(nn.Dropout(config.dropout))
        dec.append(nn.Conv1d(rev[-1], config.in_channels, k, padding=pad))
        dec.append(activation(config.out_activation))
        self.decoder = nn.Sequential(*dec)

    @property
    def code_dim(self) -> int:
        if self.config.code_size is not None:
            return self.config.code_size
        return self.feature_shape[0] * self.feature_shape[1]

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.config.in_channels or x.shape[2] != self.config.length:
            raise UserError(f"expected windows shaped (batch, {self.config.in_channels}, {self.config.length}),"
                            f" got {tuple(x.shape)}")

    def _run(self, layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.training or x.device.type != "cpu":
            return layers(x)
        return channels_last_2d(layers, x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        h = self._run(self.encoder, x)
        if self.config.code_size is None:
            return h
        return self.to_code(h.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.config.code_size is not None:
            z = self.from_code(z).view(-1, *self.feature_shape)
        elif z.dim() == 2:
            z = z.view(-1, *self.feature_shape)
        return self._crop(self._run(self.decoder, z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def _crop(self, out: torch.Tensor) -> torch.Tensor:
        length = self.config.length
        if out.shape[-1] < length:  # only possible with even kernels
            out = nn.functional.pad(out, (0, length - out.shape[-1]))
        return out[..., :length]


def channels_last_2d(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`layers(x)` for (batch, channels, length) `x` in eval mode, each Conv1d / ConvTranspose1d run
    as its 2-D twin on channels-last (batch, channels, 1, length) tensors, weights included (see the
    module notes); ReLU runs in place (out of place it takes a slow path on that layout). Any other
    layer must be elementwise (activations, dropout, identity)."""
    h = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    owned = False  # may h be written in place (not a view of the caller's x)?
    for layer in layers:
        if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
            weight = layer.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            common = {"stride": (1, layer.stride[0]), "padding": (0, layer.padding[0]),
                      "dilation": (1, layer.dilation[0]), "groups": layer.groups}
            if isinstance(layer, nn.Conv1d):
                h = nn.functional.conv2d(h, weight, layer.bias, **common)
            else:
                h = nn.functional.conv_transpose2d(h, weight, layer.bias,
                                                   output_padding=(0, layer.output_padding[0]), **common)
            owned = True
        elif isinstance(layer, nn.ReLU):
            h = h.relu_() if owned else h.relu()
        elif not isinstance(layer, (nn.Dropout, nn.Identity)):
            h, owned = layer(h), True
    return h.squeeze(2).contiguous()


register_model(Conv1dAE, Conv1dConfig)
