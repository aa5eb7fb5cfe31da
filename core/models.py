"""Model specs: a model is rebuilt from {"class": name, "config": {...}} and never unpickled."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from core.conv1d import Conv1dAE, Conv1dConfig
from core.dense import DenseAE, DenseConfig
from core.errors import ArtifactError
from core.variational import VAEConfig, VariationalAE

MODEL_CLASSES: dict[str, tuple[type[nn.Module], type]] = {
    "DenseAE": (DenseAE, DenseConfig),
    "Conv1dAE": (Conv1dAE, Conv1dConfig),
    "VariationalAE": (VariationalAE, VAEConfig),
}


def register_model(model_cls: type[nn.Module], config_cls: type) -> None:
    """Let an application add its own module class so artifacts can rebuild it."""
    MODEL_CLASSES[model_cls.__name__] = (model_cls, config_cls)


def model_spec(model: nn.Module) -> dict[str, Any]:
    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise ArtifactError(f"model class {name} is not registered in core.models")
    return {"class": name, "config": dataclasses.asdict(model.config)}


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    try:
        model_cls, config_cls = MODEL_CLASSES[spec["class"]]
    except (KeyError, TypeError):
        raise ArtifactError(f"unknown or missing model class in spec: {spec!r:.200}") from None
    fields = {f.name for f in dataclasses.fields(config_cls)}
    raw = dict(spec.get("config") or {})
    unknown = set(raw) - fields
    if unknown:
        raise ArtifactError(f"model config has unknown fields {sorted(unknown)} for {spec['class']}")
    try:
        return model_cls(config_cls(**raw))
    except TypeError as exc:
        raise ArtifactError(f"model config for {spec['class']} is invalid: {exc}") from None


def dense_vae(input_dim: int, hidden: list[int], latent_size: int, **dense_kw: Any) -> VariationalAE:
    """Convenience: a VAE whose body is a DenseAE with the given hidden widths."""
    body = DenseAE(DenseConfig(input_dim=input_dim, hidden=hidden[:-1], code_size=hidden[-1], **dense_kw))
    return VariationalAE(VAEConfig(body=model_spec(body), latent_size=latent_size))


def conv1d_vae(in_channels: int, length: int, latent_size: int, **conv_kw: Any) -> VariationalAE:
    body = Conv1dAE(Conv1dConfig(in_channels=in_channels, length=length, **conv_kw))
    return VariationalAE(VAEConfig(body=model_spec(body), latent_size=latent_size))
