"""GLocal-K (Han, Lim, Zhang, Kang, Poon; CIKM 2021): a rating autoencoder with local and global
kernels. Network, objective and its two-phase training loop (the registry entry's `trainer`).

What it is, as written here:
- Item-based like I-AutoRec: a row is one item's ratings by every user (0 = unrated), the output
  its predicted ratings. Two sigmoid hidden layers (500 units each) and an identity output layer.
- Local kernels: every layer's weight matrix is W ⊙ K, K[i, j] = max(0, 1 − ‖u_i − v_j‖²) with
  u_i (one per input unit) and v_j (one per output unit) learned 5-d vectors. K has finite support,
  so pairs of units whose vectors drift apart stop being connected: a learned sparse connectivity.
- Loss: masked MSE on the observed ratings + l2/2·‖W‖² + sparsity/2·‖K‖² over the layers. The
  paper's ML-100K weights (λ2 = 20, λs = 0.006 on half a *summed* squared error) are, for u1.base's
  80 000 ratings in this mean-error convention, l2 = 2·20/80 000 = 5e-4 and sparsity = 1.5e-7.
- Phase 1, pre-training: the local-kernel AE alone, full-batch L-BFGS (as the paper).
- Phase 2, fine-tuning: the pre-trained AE's reconstruction of the whole training matrix is
  average-pooled over users, giving one number per item; a softmax over those numbers weights a
  bank of candidate kernels (one per item) into one global convolution kernel. The rating matrix is
  convolved with it (then ReLU), and the result goes through the same local AE; everything (AE,
  bank) trains on the same masked loss, again full-batch L-BFGS. The bank starts as the identity
  kernel plus noise, so fine-tuning starts from the pre-trained predictions and can only move on
  from there. (The official code weights the bank by a plain dot product with the pooled vector;
  the softmax keeps the kernel a convex mix of the bank, so its size does not grow with the
  number of items.)

The convolution, and why along users only (`conv_axes="users"`, the default): the paper convolves
the items×users matrix with a 3×3 kernel, so an item's input mixes in its neighbouring items'
rows. The recommender scores item-based models 1024 item rows at a time, so an item at a batch
edge would see zero padding instead of its neighbour and get a different prediction than in a
whole-matrix pass. With a 1×k kernel along the user axis, each item row is convolved on its own,
and any batching (one row, 1024 rows, all of them) gives exactly the same predictions. Neighbours
by user id (as by item id in the paper) carry no meaning of their own; the kernel learns how much
of them to blend in. `conv_axes="both"` is the paper's k×k kernel, kept for comparison: its
predictions are those of the whole matrix only when it is fed the whole matrix at once.

Training computes what the loss needs and nothing more (GLocalKNet.observed/pooled, ObservedBatch):
the outputs at the observed ratings only, as a sampled product (core.sampled), with the same loss
and gradients as the dense masked loss; predictions still run the whole dense network.

After training, the global kernel is computed once more and frozen into the module (a buffer), so
the saved network is a plain module whose `reconstruct(x)` needs nothing but the rows; the kernel
bank is a training device only and is not saved.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.device import resolve_device, seed_everything
from core.errors import UserError
from core.jobs.progress import progress_bar
from core.layers import ConfiguredModule
from core.losses import masked_mse
from core.sampled import Pattern, sampled_product, sparse_dense_product, sparse_mm
from core.specs import register_model
from core.train import History, TrainConfig, as_source, to_device

CONV_AXES = ("users", "both")


# ------------------------------------------------------------------------------------------ network
@dataclass
class GLocalKConfig:
    """`input_dim`: users (a row is an item). `conv_size` k: the global kernel is 1×k along users
    (`conv_axes="users"`) or k×k (`"both"`, the paper's)."""

    input_dim: int
    hidden: int = 500
    layers: int = 2
    kernel_dim: int = 5
    conv_size: int = 3
    conv_axes: str = "users"

    def validate(self) -> None:
        if min(self.input_dim, self.hidden, self.layers, self.kernel_dim) < 1:
            raise UserError("input_dim, hidden, layers and kernel_dim must be positive")
        if self.conv_size < 1 or self.conv_size % 2 == 0:
            raise UserError(f"conv_size must be a positive odd number, got {self.conv_size}")
        if self.conv_axes not in CONV_AXES:
            raise UserError(f"conv_axes must be one of {', '.join(CONV_AXES)}, got {self.conv_axes!r}")

    @property
    def conv_shape(self) -> tuple[int, int]:
        return (1 if self.conv_axes == "users" else self.conv_size, self.conv_size)


class KernelLinear(nn.Module):
    """y = x (W ⊙ K) + b with K[i, j] = max(0, 1 − ‖u_i − v_j‖²), a finite-support kernel between
    learned vectors of the input and the output units."""

    def __init__(self, n_in: int, n_out: int, kernel_dim: int) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (n_in + n_out))  # Glorot uniform, as the paper's TensorFlow default
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_out))
        # tiny vectors: every pair starts at distance ~0, fully connected (K ≈ 1)
        self.u = nn.Parameter(torch.randn(n_in, kernel_dim) * 1e-3)
        self.v = nn.Parameter(torch.randn(n_out, kernel_dim) * 1e-3)
        self.shared: dict[str, torch.Tensor] | None = None  # within GLocalKNet.sharing_kernels: computed once

    def kernel(self) -> torch.Tensor:
        if self.shared is not None and "kernel" in self.shared:
            return self.shared["kernel"]
        # ‖u_i − v_j‖² expanded (no (n_in, n_out, dim) intermediate), clamped at 0 against rounding
        sq = (self.u ** 2).sum(1, keepdim=True) + (self.v ** 2).sum(1) - 2 * self.u @ self.v.T
        kernel = (1.0 - sq.clamp_min(0.0)).clamp_min(0.0)
        if self.shared is not None:
            self.shared["kernel"] = kernel
        return kernel

    def forward(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.effective_weight(kernel)
        # a sparse input (the trainer's pre-training rows): only the observed ratings are multiplied
        return sparse_mm(x, weight) + self.bias

    def effective_weight(self, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """W ⊙ K (K: the layer's local kernel unless given)."""
        if kernel is not None:
            return self.weight * kernel
        if self.shared is not None and "weight" in self.shared:
            return self.shared["weight"]
        weight = self.weight * self.kernel()
        if self.shared is not None:
            self.shared["weight"] = weight
        return weight


class GLocalKNet(ConfiguredModule):
    """The local-kernel AE, with a frozen global convolution in front once fine-tuned.

    Buffers `global_kernel` (the conv kernel) and `finetuned` (1: convolve the input first) are
    saved with the weights; a module that was only pre-trained reconstructs without the conv."""

    def __init__(self, config: GLocalKConfig) -> None:
        super().__init__(config)
        widths = [config.input_dim] + [config.hidden] * config.layers + [config.input_dim]
        self.layers = nn.ModuleList(KernelLinear(a, b, config.kernel_dim) for a, b in zip(widths[:-1], widths[1:]))
        self.register_buffer("global_kernel", identity_kernel(config.conv_shape))
        self.register_buffer("finetuned", torch.zeros(()))

    @property
    def code_dim(self) -> int:
        return self.config.hidden

    @contextmanager
    def sharing_kernels(self) -> Iterator[None]:
        """Within: each layer's local kernel and W ⊙ K are computed once and reused, so one loss
        evaluation (forward passes, pooling, penalties) builds them and back-propagates through them
        once instead of up to three times. Only for a single evaluation: the parameters must not
        change inside."""
        for layer in self.layers:
            layer.shared = {}
        try:
            yield
        finally:
            for layer in self.layers:
                layer.shared = None

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """The local-kernel AE alone (what pre-training trains)."""
        for layer in self.layers[:-1]:
            x = torch.sigmoid(layer(x))
        return self.layers[-1](x)

    def convolve(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """ReLU(x ∗ kernel), zero-padded to keep the shape. Along users only, each row is convolved
        on its own; with `both`, the rows given are one image (rows = neighbouring items)."""
        return F.relu(shifted_correlation(x, kernel.to(x.dtype)))

    def forward(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """`kernel` given: convolve with it (fine-tuning); else the frozen kernel if fine-tuned."""
        if kernel is None and bool(self.finetuned):
            kernel = self.global_kernel
        return self.local(x if kernel is None else self.convolve(x, kernel))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def observed(self, batch: ObservedBatch, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """`forward(batch.dense, kernel)` read at the batch's observed entries (in its pattern's
        order), without computing the other outputs: the un-convolved input enters as sparse rows and
        the output layer is a sampled product. What training needs, at a fraction of the work."""
        if kernel is None and bool(self.finetuned):
            kernel = self.global_kernel
        layers = list(self.layers[:-1])
        if kernel is None:
            x = batch.sparse
        elif batch.conv is not None and batch.conv.shape == tuple(kernel.shape):
            # ReLU(x ∗ kernel) is non-zero only next to a rating: the first layer reads those entries
            first, layers = layers[0], layers[1:]
            support = batch.conv.pattern
            x = torch.sigmoid(sparse_dense_product(batch.conv.convolve(kernel), first.effective_weight(), support)
                              + first.bias)
        else:
            x = self.convolve(batch.dense, kernel)
        for layer in layers:
            x = torch.sigmoid(layer(x))
        last = self.layers[-1]
        return sampled_product(x, last.effective_weight(), batch.pattern) + last.bias[batch.pattern.col]

    def pooled(self, batch: ObservedBatch) -> torch.Tensor:
        """`local(batch.dense).mean(dim=1)` (one number per row: what the kernel bank reads), through
        the output layer's column mean instead of its whole output (the layer is linear)."""
        x = batch.sparse
        for layer in self.layers[:-1]:
            x = torch.sigmoid(layer(x))
        last = self.layers[-1]
        return x @ last.effective_weight().mean(dim=1) + last.bias.mean()

    @torch.no_grad()
    def freeze_global_kernel(self, kernel: torch.Tensor | None) -> None:
        """Store `kernel` as the module's conv (None: back to the plain local AE)."""
        if kernel is None:
            self.global_kernel.copy_(identity_kernel(self.config.conv_shape))
            self.finetuned.fill_(0.0)
        else:
            self.global_kernel.copy_(kernel.detach().reshape(self.global_kernel.shape))
            self.finetuned.fill_(1.0)

    def penalties(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ‖W‖², Σ‖K‖²) over the layers."""
        w = sum((layer.weight ** 2).sum() for layer in self.layers)
        k = sum((layer.kernel() ** 2).sum() for layer in self.layers)
        return w, k


register_model(GLocalKNet, GLocalKConfig)


def shifted_correlation(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`F.conv2d(x[None, None], kernel[None, None], padding=(kh // 2, kw // 2))[0, 0]` (a zero-padded
    2-D cross-correlation keeping x's shape) as a sum of kh·kw shifted copies of x. With a single
    channel and a 3-tap kernel on the items × users matrix, CPU convolution kernels take about 100 ms a
    forward-and-backward pass where this takes 8 (a third of GLocal-K's fine-tuning time went there);
    the results agree to float32 rounding."""
    kh, kw = kernel.shape
    height, width = x.shape
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2))
    out = torch.zeros_like(x)
    for i in range(kh):
        for j in range(kw):
            out = out + kernel[i, j] * padded[i:i + height, j:j + width]
    return out


def identity_kernel(shape: tuple[int, int]) -> torch.Tensor:
    kernel = torch.zeros(shape)
    kernel[shape[0] // 2, shape[1] // 2] = 1.0
    return kernel


class GlobalKernelBank(nn.Module):
    """One candidate kernel per item; the global kernel is their softmax-weighted mix, the weights
    from the items' average predicted rating (the AE's reconstruction pooled over users)."""

    def __init__(self, n_items: int, shape: tuple[int, int], noise: float = 0.1,
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.shape, self.temperature = shape, temperature
        start = identity_kernel(shape).reshape(1, -1) + noise * torch.randn(n_items, shape[0] * shape[1])
        self.kernels = nn.Parameter(start)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """`pooled`: one value per item (row), the AE's reconstruction averaged over users."""
        weights = torch.softmax(pooled / self.temperature, dim=0)
        return (weights @ self.kernels).reshape(self.shape)


# ------------------------------------------------------------------------------------------- loss
@dataclass(frozen=True)
class ObservedBatch:
    """The whole training matrix as GLocal-K's trainer feeds it: the input rows dense (what the
    convolution reads) and as csr (what the plain AE reads), and the target's observed entries
    (rating ≠ 0) as a pattern with their values. The loss, its gradients and the kernel bank's
    pooling are those of the dense masked loss (to float rounding), with about half the work."""

    dense: torch.Tensor
    sparse: torch.Tensor
    pattern: Pattern
    values: torch.Tensor
    conv: ConvSupport | None = None  # fine-tuning's convolution, computed at its support only

    @classmethod
    def of(cls, x: torch.Tensor, target: torch.Tensor, conv_shape: tuple[int, int] | None = None) -> ObservedBatch:
        pattern = Pattern.of(target != 0)
        conv = ConvSupport.of(x, conv_shape) if conv_shape is not None else None
        return cls(x, pattern_csr(x), pattern, pattern.gather(target), conv)


@dataclass(frozen=True)
class ConvSupport:
    """Where a zero-padded (kh × kw) cross-correlation of a sparse matrix can be non-zero (an entry
    with a non-zero input under the kernel's footprint), and those inputs, one column per tap: the
    convolution at the support is then `taps @ kernel.flatten()`, and everywhere else exactly 0.
    On ML-100K's item rows a 1 × 3 kernel's support is 13 % of the matrix (the ratings 5 %), so fine-tuning's
    first layer multiplies that instead of the dense convolved matrix."""

    shape: tuple[int, int]
    pattern: Pattern
    taps: torch.Tensor  # (support entries, kh·kw)

    @classmethod
    def of(cls, x: torch.Tensor, shape: tuple[int, int]) -> ConvSupport:
        kh, kw = shape
        reach = shifted_correlation((x != 0).to(x.dtype), torch.ones(shape, dtype=x.dtype, device=x.device))
        pattern = Pattern.of(reach > 0)
        padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2))
        taps = torch.stack([padded[pattern.row + i, pattern.col + j] for i in range(kh) for j in range(kw)], dim=1)
        return cls((kh, kw), pattern, taps)

    def convolve(self, kernel: torch.Tensor) -> torch.Tensor:
        """ReLU(x ∗ kernel) at the support entries, in the pattern's order."""
        return F.relu(self.taps @ kernel.reshape(-1).to(self.taps.dtype))


def pattern_csr(x: torch.Tensor) -> torch.Tensor:
    """x (dense) as a csr matrix of its non-zero entries."""
    pattern = Pattern.of(x != 0)
    return pattern.csr(pattern.gather(x))


@dataclass
class GLocalKObjective:
    """Masked MSE + l2/2·Σ‖W‖² + sparsity/2·Σ‖K‖² (K: the local kernels). `kernel`: the global
    kernel to convolve with (fine-tuning), else the module's own state."""

    l2: float = 5e-4
    sparsity: float = 1.5e-7

    def __post_init__(self) -> None:
        if self.l2 < 0 or self.sparsity < 0:
            raise UserError("GLocal-K's l2 and sparsity weights must be non-negative")

    def __call__(self, model: nn.Module, batch: Any, epoch: float, training: bool,
                 kernel: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        if isinstance(batch, ObservedBatch):  # the trainer's: outputs at the observed entries only
            recon = ((model.observed(batch, kernel) - batch.values) ** 2).mean()
        else:
            x, target = batch
            recon = masked_mse(model(x, kernel), target)
        w, k = model.penalties()
        loss = recon + self.l2 / 2 * w + self.sparsity / 2 * k
        return loss, {"recon": float(recon.detach())}


# --------------------------------------------------------------------------------------- training
class GLocalKTrainer:
    """GLocal-K's loop, with core.train.Trainer's interface: `fit(model, train, val)` → History.

    The whole training matrix is one batch (L-BFGS, `lbfgs_iterations` iterations an epoch, `lr`
    the step scale, as core's L-BFGS). `epochs` is the total: the first round(epochs·pretrain_share)
    (at least 1) pre-train the local AE, the rest fine-tune with the global kernel (none: the model
    stays a plain local-kernel AE). `val`: None, or a callable model → loss-like number (e.g.
    validation RMSE) evaluated after each epoch; then each phase keeps its best epoch and stops after
    `patience` epochs without improvement, and fine-tuning is dropped if it never beats the best
    pre-trained epoch. `kept` says how many epochs of each phase the model ended with.
    Honours epochs, lr, seed, device, progress and lbfgs_iterations of the TrainConfig (the optimizer
    is always L-BFGS; weight decay, batch size, amp and clipping do not apply)."""

    def __init__(self, config: TrainConfig, objective: GLocalKObjective, pretrain_share: float = 0.5,
                 patience: int = 3, bank_noise: float = 0.1, temperature: float = 1.0) -> None:
        if not 0.0 < pretrain_share <= 1.0:
            raise UserError(f"pretrain_share must be in (0, 1], got {pretrain_share}")
        if patience < 1:
            raise UserError("patience must be at least 1")
        self.config, self.objective = config, objective
        self.pretrain_share, self.patience = pretrain_share, patience
        self.bank_noise, self.temperature = bank_noise, temperature
        self.kept: tuple[int, int] = (0, 0)

    def split_epochs(self, epochs: int) -> tuple[int, int]:
        pre = min(epochs, max(1, round(epochs * self.pretrain_share)))
        return pre, epochs - pre

    def _lbfgs(self, params: list[torch.nn.Parameter]) -> torch.optim.LBFGS:
        cfg = self.config
        return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=cfg.lbfgs_iterations, history_size=10,
                                 line_search_fn="strong_wolfe", tolerance_grad=1e-15, tolerance_change=1e-15)

    def fit(self, model: GLocalKNet, train: Any, val: Callable[[nn.Module], float] | None = None) -> History:
        cfg = self.config
        cfg.validate()
        if val is not None and not callable(val):
            raise UserError("GLocal-K's validation is a callable metric (e.g. RMSE on held-out ratings)")
        device = resolve_device(cfg.device)
        generator = seed_everything(cfg.seed)
        batch = to_device(next(iter(as_source(train).batches(2 ** 62, False, generator))), device)
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model.to(device)
        model.freeze_global_kernel(None)
        bank = GlobalKernelBank(x.shape[0], model.config.conv_shape, self.bank_noise, self.temperature).to(device)
        pre, fine = self.split_epochs(cfg.epochs)
        history = History()
        start = time.perf_counter()
        with progress_bar(cfg.progress, with_status=True) as prog:
            task = prog.add_task(cfg.description, total=pre + fine, status="") if prog else None
            observed = ObservedBatch.of(x, batch[1] if isinstance(batch, (tuple, list)) else x,
                                        model.config.conv_shape if fine else None)
            # phase 1: the local-kernel AE
            best_pre = self._phase(model, observed, self._lbfgs(list(model.parameters())), pre, 0, history,
                                   val, prog, task, lambda: None)
            if best_pre[2] is not None:  # fine-tuning starts from the best pre-trained epoch
                model.load_state_dict(best_pre[2])
            # phase 2: global kernel from the AE's pooled reconstruction, convolution, the same AE
            best_fine, first_fine = (math.inf, -1, None), len(history.train_loss)
            if fine:
                def global_kernel() -> torch.Tensor:
                    return bank(model.pooled(observed))

                best_fine = self._phase(model, observed, self._lbfgs([*model.parameters(), *bank.parameters()]),
                                        fine, first_fine, history, val, prog, task, global_kernel)
            if val is None:  # no monitor: the last epoch, fine-tuned if there was fine-tuning
                self.kept = (pre, fine)
                history.best_epoch = pre + fine - 1
            elif best_fine[0] < best_pre[0]:
                model.load_state_dict(best_fine[2])
                history.best_epoch = best_fine[1]
                self.kept = (best_pre[1] + 1, best_fine[1] - first_fine + 1)
            else:
                model.load_state_dict(best_pre[2])
                history.best_epoch = best_pre[1]
                self.kept = (best_pre[1] + 1, 0)
        model.eval()
        history.seconds = time.perf_counter() - start
        return history

    def _phase(self, model: GLocalKNet, batch: Any, optimizer: torch.optim.Optimizer, epochs: int, first: int,
               history: History, val: Any, prog: Any, task: Any,
               global_kernel: Callable[[], torch.Tensor | None]) -> tuple[float, int, dict | None]:
        """`epochs` epochs of one phase; (best monitored value, its global epoch index, its state)."""
        best: tuple[float, int, dict | None] = (math.inf, -1, None)
        waited = 0
        for epoch in range(first, first + epochs):
            model.train()
            seen: dict[str, Any] = {}

            def closure(epoch: int = epoch, seen: dict[str, Any] = seen) -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                with model.sharing_kernels():
                    loss, parts = self.objective(model, batch, float(epoch), True, kernel=global_kernel())
                loss.backward()
                seen["parts"] = parts
                return loss

            loss = float(optimizer.step(closure).detach())
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at epoch {epoch + 1}; try a larger l2")
            with torch.no_grad():
                kernel = global_kernel()
            if kernel is not None:
                model.freeze_global_kernel(kernel)
            history.train_loss.append(loss)
            history.parts.append({**seen.get("parts", {}), "phase": 1.0 if kernel is None else 2.0})
            status = f"{'pre-train' if kernel is None else 'fine-tune'} loss {loss:.4f}"
            if val is not None:
                model.eval()
                with torch.no_grad():
                    monitored = float(val(model))
                history.val_loss.append(monitored)
                status += f" val {monitored:.4f}"
                if monitored < best[0]:
                    best, waited = (monitored, epoch, copy.deepcopy(model.state_dict())), 0
                else:
                    waited += 1
            if prog:
                prog.update(task, advance=1, status=status)
            if val is not None and waited >= self.patience:
                break
        return best
