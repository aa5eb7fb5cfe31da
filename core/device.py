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


def _env_threads() -> int | None:
    """OMP_NUM_THREADS as a positive int (its first entry, as in `4,2`), or None when unset or unusable."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw.split(",")[0])
    except ValueError:
        n = 0
    if n < 1:
        log.warning("ignoring OMP_NUM_THREADS=%r: not a positive integer", raw)
        return None
    return n


def set_threads(n: int | None, default: int | None = None) -> int:
    """Set torch's intra-op CPU thread count deliberately; returns the count now in effect.

    Precedence: an explicit `n` wins; else OMP_NUM_THREADS if set (the usual way an operator caps a
    process); else `default`; `default=None` leaves torch's own choice (one thread per core).

    Why: torch's default uses every core, which pays off for large batches on an idle machine but
    collapses when the cores are shared. Work as small as one record or a micro-batch (the live
    monitor) gains nothing from parallelism, and when other processes keep the cores busy each op
    waits for its slowest, descheduled thread: `ae tsad monitor` fell from ~12,000 to ~850
    records/s on a busy 2-core machine. So the monitor runs on one thread unless told otherwise,
    while batch commands keep torch's default.
    """
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"--threads must be a whole number of at least 1, got {n!r}")
        chosen: int | None = n
    else:
        chosen = _env_threads()
        if chosen is None:
            if default is not None and (isinstance(default, bool) or not isinstance(default, int) or default < 1):
                raise UserError(f"default thread count must be at least 1, got {default!r}")
            chosen = default
    if chosen is not None and torch.get_num_threads() != chosen:
        torch.set_num_threads(chosen)
        log.debug("torch intra-op threads set to %d", chosen)
    return torch.get_num_threads()
