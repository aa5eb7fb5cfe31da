"""Trainer: one plain fit loop for every autoencoder and app.

Mini-batches (or full-batch L-BFGS, where an epoch is a few L-BFGS iterations over the whole
training set), optimiser choice, weight decay, a validation split, early stopping that restores the
best weights, loss history, gradient clipping, mixed precision on CUDA and a rich progress bar on
stderr. Seeded, so CPU runs repeat exactly.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from core.device import resolve_device, seed_everything
from core.errors import UserError
from core.jobs.progress import progress_bar
from core.objective import ReconstructionObjective
from core.trainparts import OPTIMIZERS, BestEpoch, History, Monitor, make_optimizer  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


Objective = Callable[[nn.Module, Any, float, bool], "tuple[torch.Tensor, dict]"]


@runtime_checkable
class BatchSource(Protocol):
    """Anything that yields mini-batches (tensors or tuples of tensors) for one epoch, e.g. rows of a
    sparse matrix densified on the fly."""

    def batches(self, batch_size: int, shuffle: bool, generator: torch.Generator) -> Iterator[Any]: ...

    def n_batches(self, batch_size: int) -> int: ...


class TensorSource:
    """Mini-batches of rows of one or more aligned tensors (a batch is x, or a tuple)."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise UserError("training tensors must be non-empty and of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def n_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)

    def batches(self, batch_size: int, shuffle: bool, generator: torch.Generator) -> Iterator[Any]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            parts = tuple(t[idx] for t in self.tensors)
            yield parts[0] if len(parts) == 1 else parts


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    val_fraction: float = 0.0
    patience: int | None = None
    min_delta: float = 0.0
    clip_grad_norm: float | None = None
    amp: bool = False
    seed: int = 0
    device: str = "auto"
    shuffle: bool = True
    accumulate_grad: bool = False  # never zero gradients: only to reproduce code that forgot zero_grad
    # optimizer "lbfgs": full-batch iterations per epoch (lbfgs ignores batch_size, amp, clip_grad_norm
    # and accumulate_grad: it always sees the whole training set at full precision)
    lbfgs_iterations: int = 10
    restore_best: bool = False  # end with the weights of the best monitored epoch, even without early stopping
    # > 1: data-parallel (torch DDP) on this many Ray Train workers, same global batch and seed
    # (core.distributed; needs the `ray` extra; mini-batch optimisers only)
    workers: int = 1
    progress: bool = False
    description: str = "training"

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise UserError(f"learning rate must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise UserError("weight decay must be non-negative")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.lbfgs_iterations < 1:
            raise UserError("lbfgs_iterations must be at least 1")
        if self.patience is not None and self.patience < 1:
            raise UserError("patience must be at least 1")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise UserError(f"workers must be a whole number of at least 1, got {self.workers!r}")
        if self.workers > 1:
            from core.distributed import check_supported

            check_supported(self)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def as_source(data: Any) -> BatchSource | None:
    """Arrays and tensors become a TensorSource; anything with `batches`/`n_batches` is used as it is."""
    if data is None:
        return None
    if isinstance(data, np.ndarray):
        return TensorSource(torch.as_tensor(data, dtype=torch.float32))
    if isinstance(data, torch.Tensor):
        return TensorSource(data)
    if isinstance(data, tuple):
        return TensorSource(*(torch.as_tensor(d, dtype=torch.float32) for d in data))
    if isinstance(data, BatchSource):
        return data
    raise UserError(f"cannot train on data of type {type(data).__name__}")


class Trainer:
    """`Trainer(config, objective).fit(model, train, val)` → History; the model keeps its best weights."""

    def __init__(self, config: TrainConfig | None = None, objective: Objective | None = None) -> None:
        self.config = config or TrainConfig()
        self.objective = objective or ReconstructionObjective()

    def fit(self, model: nn.Module, train: BatchSource | np.ndarray | torch.Tensor | tuple,
            val: Any = None) -> History:
        """`val`: data scored with the objective, or a callable `val(model) -> float` (lower is
        better) for what the loss cannot tell; a `Monitor` wraps a metric where higher is better
        (e.g. NDCG on validation users) and gives it a name for the progress bar and logs."""
        cfg = self.config
        cfg.validate()
        device = resolve_device(cfg.device)
        generator = seed_everything(cfg.seed)
        monitor = val if callable(val) and not isinstance(val, BatchSource) else None
        train_src, val_src = as_source(train), (None if monitor else as_source(val))
        if val_src is None and cfg.val_fraction > 0 and isinstance(train_src, TensorSource):
            train_src, val_src = _split(train_src, cfg.val_fraction, generator)
        if cfg.workers > 1:  # the same loop on N Ray Train workers under DDP; the weights come back into `model`
            from core.distributed import fit_distributed

            return fit_distributed(self, model, train_src, val_src, monitor, generator)
        model.to(device)
        optimizer = make_optimizer(model, cfg)
        use_amp = cfg.amp and device.type == "cuda"
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        history = History()
        n_batches = max(1, train_src.n_batches(cfg.batch_size))
        full_batch = None
        if cfg.optimizer == "lbfgs":  # the whole training set as one batch, moved to the device once
            full_batch = to_device(next(iter(train_src.batches(2 ** 62, False, generator))), device)
        start = time.perf_counter()
        with progress_bar(cfg.progress, with_status=True) as prog:
            task = prog.add_task(cfg.description, total=cfg.epochs, status="") if prog else None
            best = BestEpoch(cfg, history, monitor, prog, task)
            for epoch in range(cfg.epochs):
                model.train()
                if full_batch is not None:
                    total, count, parts_sum = self._lbfgs_epoch(model, optimizer, full_batch, epoch)
                else:
                    total, count, parts_sum = self._minibatch_epoch(model, optimizer, scaler, train_src, generator,
                                                                    epoch, n_batches, device, use_amp, amp_dtype)
                train_loss = total / max(count, 1)
                history.train_loss.append(train_loss)
                history.parts.append({k: v / max(count, 1) for k, v in parts_sum.items()})
                monitored = train_loss
                if monitor is not None or val_src is not None:
                    if monitor is not None:
                        model.eval()
                        with torch.no_grad():
                            val_loss = float(monitor(model))
                    else:
                        val_loss = self.evaluate(model, val_src, epoch + 1.0, device)
                    history.val_loss.append(val_loss)
                    monitored = val_loss
                if best.end_epoch(model, epoch, train_loss, monitored):
                    break
            best.finish(model)
        model.eval()
        history.seconds = time.perf_counter() - start
        return history

    def _check_finite(self, loss: torch.Tensor, epoch: int) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}; "
                                     "try a lower learning rate or gradient clipping")

    def _minibatch_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, train_src: Any,
                         generator: torch.Generator, epoch: int, n_batches: int, device: torch.device,
                         use_amp: bool, amp_dtype: torch.dtype) -> tuple[float, int, dict[str, float]]:
        cfg = self.config
        total, count, parts_sum = 0.0, 0, {}
        for i, batch in enumerate(train_src.batches(cfg.batch_size, cfg.shuffle, generator)):
            batch = to_device(batch, device)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                loss, parts = self.objective(model, batch, epoch + i / n_batches, True)
            self._check_finite(loss, epoch)
            if not cfg.accumulate_grad:
                optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_grad_norm:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach())
            count += 1
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
        return total, count, parts_sum

    def _lbfgs_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any,
                     epoch: int) -> tuple[float, int, dict[str, float]]:
        """`lbfgs_iterations` L-BFGS iterations on the full batch; weight decay enters as an explicit L2 term since
        L-BFGS has none. Returns the objective before the step, like the mini-batch path."""
        decay = self.config.weight_decay
        seen: dict[str, Any] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss, parts = self.objective(model, batch, float(epoch), True)
            if decay > 0:
                loss = loss + decay / 2 * sum((p ** 2).sum() for p in model.parameters() if p.requires_grad)
            loss.backward()  # a trial point of the line search may overflow; it backtracks from there
            seen.setdefault("parts", parts)
            return loss

        loss = optimizer.step(closure)
        self._check_finite(loss, epoch)
        return float(loss.detach()), 1, dict(seen.get("parts", {}))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Any, epoch: float = 0.0, device: torch.device | None = None) -> float:
        """Mean objective over `data` with the model in eval mode (no dropout, no corruption)."""
        src = as_source(data)
        device = device or next(model.parameters()).device
        model.eval()
        gen = torch.Generator().manual_seed(0)
        total, count = 0.0, 0
        for batch in src.batches(self.config.batch_size, False, gen):
            loss, _ = self.objective(model, to_device(batch, device), epoch, False)
            total += float(loss)
            count += 1
        return total / max(count, 1)


def _split(src: TensorSource, fraction: float, generator: torch.Generator) -> tuple[TensorSource, TensorSource]:
    n = len(src)
    n_val = max(1, int(round(n * fraction)))
    if n - n_val < 1:
        raise UserError(f"validation split of {fraction} leaves no training rows out of {n}")
    order = torch.randperm(n, generator=generator)
    val_idx, train_idx = order[:n_val], order[n_val:]
    return (TensorSource(*(t[train_idx] for t in src.tensors)),
            TensorSource(*(t[val_idx] for t in src.tensors)))
