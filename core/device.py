"""Device selection and seeding, so every command accepts `--device auto|cpu|cuda|mps` and `--seed`."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from core.errors import UserError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn a user's device name into a torch.device: `auto` prefers CUDA, then MPS, then CPU."""
    if isinstance(name, torch.device):
        return name
    key = str(name).strip().lower()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if key.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
        return torch.device(key)
    if key == "mps":
        if not _mps_available():
            raise UserError("device 'mps' requested but MPS is not available; use --device cpu or auto")
        return torch.device("mps")
    if key == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch; on CPU this makes training bit-for-bit repeatable.

    Returns a CPU generator seeded the same way, for shuffling without touching global state.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def describe_devices() -> dict[str, object]:
    """What `ae info` shows: which accelerators torch can see."""
    return {
        "auto": str(resolve_device("auto")),
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps": _mps_available(),
        "threads": torch.get_num_threads(),
    }
