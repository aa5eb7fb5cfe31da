"""The parts of a fit loop that every trainer shares: the optimiser choice, the loss history, the
validation monitor and the end-of-epoch bookkeeping (best weights, early stopping, progress).

Kept apart from core.train so the distributed loop (core.distributed), which core.train starts, can
use them without importing core.train back.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger("core.train")  # the trainer's log: users filter on that name

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "lbfgs")


@dataclass(frozen=True)
class Monitor:
    """A validation metric computed from the model, e.g. NDCG@100 on validation users.

    Early stopping and `restore_best` minimise a loss-like number, so a metric where higher is better
    is negated (`History.val_loss` keeps that number); the progress bar and the logs show the metric
    itself under its name ("val ndcg@100 0.4312"), never a puzzling negative "val".
    """

    metric: Callable[[nn.Module], float]
    name: str = "val"
    higher_is_better: bool = False

    def __call__(self, model: nn.Module) -> float:
        value = float(self.metric(model))
        return -value if self.higher_is_better else value

    def show(self, loss_like: float) -> str:
        """The metric as the user knows it, from the loss-like number kept in the history."""
        return f"{self.name} {-loss_like if self.higher_is_better else loss_like:.4f}"


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(**d)


def make_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """The optimiser `cfg` (a core.train.TrainConfig) names, over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lbfgs":
        # lbfgs_iterations per epoch (the state carries across calls; torch's L-BFGS stalls when
        # resumed after single iterations); the epochs bound the work, so the tolerances only stop it
        # at an exact optimum (the defaults stop a mean-scaled loss, whose gradients are tiny, early)
        return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=cfg.lbfgs_iterations, history_size=10,
                                 line_search_fn="strong_wolfe",
                                 tolerance_grad=1e-15, tolerance_change=1e-15)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)


def _show_val(monitor: Any, loss_like: float) -> str:
    """`val <name> <value>` for a named Monitor (true sign), else the loss-like `val <value>`."""
    return f"val {monitor.show(loss_like)}" if isinstance(monitor, Monitor) else f"val {loss_like:.4f}"


class BestEpoch:
    """What every training loop does after an epoch: note the monitored loss, keep the best
    weights (with early stopping or `restore_best`), report progress, say when to stop, and at the
    end restore the best weights and say which epoch was kept ("kept epoch 17 of 40 (val …)")."""

    def __init__(self, config: Any, history: History, monitor: Any, prog: Any, task: Any) -> None:
        self.config, self.history, self.monitor, self.prog, self.task = config, history, monitor, prog, task
        self.best_loss, self.best_state, self.waited = math.inf, None, 0

    def end_epoch(self, model: nn.Module, epoch: int, train_loss: float, monitored: float) -> bool:
        """Record one epoch (its `train_loss` and `val_loss` already in the history); True: stop now."""
        cfg, history = self.config, self.history
        if monitored < self.best_loss - cfg.min_delta:
            self.best_loss, self.waited, history.best_epoch = monitored, 0, epoch
            if cfg.patience is not None or cfg.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.waited += 1
        status = f"loss {train_loss:.4f}" + (f" {_show_val(self.monitor, history.val_loss[-1])}"
                                             if history.val_loss else "")
        log.debug("epoch %d: %s", epoch + 1, status)
        if self.prog:
            self.prog.update(self.task, advance=1, status=status)
        if cfg.patience is not None and self.waited >= cfg.patience:
            history.stopped_early = True
            log.info("early stop after epoch %d; best epoch %d", epoch + 1, history.best_epoch + 1)
            return True
        return False

    def finish(self, model: nn.Module) -> None:
        if self.best_state is None:
            return
        model.load_state_dict(self.best_state)
        kept = _kept_message(self.history, self.monitor)
        log.info("%s: %s", self.config.description, kept)
        if self.prog:
            self.prog.update(self.task, status=kept)


def _kept_message(history: History, monitor: Any) -> str:
    """Which epoch's weights the model ends with, e.g. "kept epoch 17 of 40 (val ndcg@100 0.4312)"."""
    best = history.best_epoch
    msg = f"kept epoch {best + 1} of {len(history.train_loss)}"
    if history.val_loss:
        return f"{msg} ({_show_val(monitor, history.val_loss[best])})"
    return f"{msg} (loss {history.train_loss[best]:.4f})"
