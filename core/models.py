"""Every autoencoder module of the library, registered for artifacts, and builders for the common VAEs."""

from __future__ import annotations

from typing import Any

from core.bundle import BundleConfig, ModuleBundle
from core.conv1d import Conv1dAE, Conv1dConfig
from core.dense import DenseAE, DenseConfig
from core.specs import MODEL_CLASSES, model_from_spec, model_spec, register_model
from core.variational import VAEConfig, VariationalAE

__all__ = ["MODEL_CLASSES", "BundleConfig", "Conv1dAE", "DenseAE", "ModuleBundle", "VariationalAE", "conv1d_vae",
           "dense_vae", "model_from_spec", "model_spec", "register_model"]


def dense_vae(input_dim: int, hidden: list[int], latent_size: int, **dense_kw: Any) -> VariationalAE:
    """Convenience: a VAE whose body is a DenseAE with the given hidden widths."""
    body = DenseAE(DenseConfig(input_dim=input_dim, hidden=hidden[:-1], code_size=hidden[-1], **dense_kw))
    return VariationalAE(VAEConfig(body=model_spec(body), latent_size=latent_size))


def conv1d_vae(in_channels: int, length: int, latent_size: int, **conv_kw: Any) -> VariationalAE:
    body = Conv1dAE(Conv1dConfig(in_channels=in_channels, length=length, **conv_kw))
    return VariationalAE(VAEConfig(body=model_spec(body), latent_size=latent_size))
