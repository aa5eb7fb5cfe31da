"""Small shared building blocks: activation lookup by name, and the base of modules built from a config."""

from __future__ import annotations

from typing import Any

from torch import nn

from core.errors import UserError

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}

ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def activation(name: str | None) -> nn.Module:
    """An activation module from its name; `None` or 'identity' means no activation."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise UserError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATION_NAMES)}") from None


class ConfiguredModule(nn.Module):
    """A module built from a dataclass config: the config is validated first and kept as `.config`,
    which is what core.specs writes to config.json and rebuilds the module from."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        config.validate()
        self.config = config
