"""Data-parallel training of core's Trainer on N Ray Train workers (torch DDP, gloo on CPU, NCCL on CUDA).

`Trainer.fit` comes here when `TrainConfig.workers > 1`. Ray is an optional dependency
(`pip install "ae-toolkit[ray]"`), imported only on this path.

What each of the N workers does, so that an update equals the 1-worker update on the same global batch:

- it gets (pickled by Ray, in memory) the Trainer's settings and objective, the built module and the
  batch sources, already split into training and validation by `Trainer.fit` exactly as with 1 worker,
  and the state of the seeded shuffling generator after that split;
- it iterates the WHOLE source with that generator, so every rank sees the same permutation and the
  same global batches (`batch_size` stays the global batch), and keeps its contiguous slice of each
  batch: rank r of N takes rows [n·r/N, n·(r+1)/N) of a batch of n rows (`ShardedSource`);
- the objective runs inside one DDP forward (`_ObjectiveStep`: the objective may call the model
  several times or call `encode`/`decode`, which a plain DDP wrapper would not see), and DDP averages
  the gradients over the ranks in its backward. The rank's loss is first weighted so that the average
  is the global batch's loss: a loss that is a MEAN over the batch rows (the default) is weighted by
  N·n_r/n (exact for uneven last batches too), one that is a SUM over the rows (an objective with
  `reduction = "sum"`, e.g. recae's CourseObjective) by N. A rank whose slice is empty (a last batch
  with fewer rows than workers) runs the whole batch with weight 0, so that it still joins the
  gradient all-reduce;
- the optimiser steps are the Trainer's own (`Trainer._minibatch_epoch`: zero_grad or
  `accumulate_grad`, clipping, AMP), on gradients that are identical on every rank, so every rank
  keeps the same weights;
- the epoch's training loss and parts are summed over the ranks (the 1-worker numbers up to rounding);
  rank 0 computes the validation loss or monitor on the full validation set and broadcasts it, so
  early stopping and the best epoch agree on every rank;
- rank 0 reports the final weights (safetensors, never a pickle) and the History through a Ray Train
  checkpoint written under a temporary directory that is removed afterwards; the driver loads them
  into the caller's module, which is saved as with 1 worker.

Not supported (a one-line UserError): the full-batch L-BFGS optimiser (there is no mini-batch to share;
each L-BFGS step would need the whole data set's loss anyway) and models with their own training loop.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from core.engines import RAY_EXTRA
from core.errors import UserError

if TYPE_CHECKING:
    from core.trainparts import History

# core.train starts this module, so it is not imported back: its Trainer, TrainConfig and batch
# sources appear here by name only
Trainer = TrainConfig = BatchSource = Any

log = logging.getLogger(__name__)

REDUCTIONS = ("mean", "sum")
_MISSING_RAY = f"--workers > 1 trains through Ray Train, which is not installed: {RAY_EXTRA}"


def require_ray() -> None:
    """Raise the one-line UserError naming the extra when Ray (with Ray Train) cannot be imported."""
    try:
        import ray  # noqa: F401
        import ray.train.torch  # noqa: F401
    except ImportError:
        raise UserError(_MISSING_RAY) from None


def check_supported(cfg: TrainConfig) -> None:
    """What `TrainConfig.validate` checks for workers > 1: a mini-batch optimiser, a usable device, Ray."""
    if cfg.optimizer == "lbfgs":
        raise UserError("--workers > 1 needs a mini-batch optimiser; lbfgs trains full-batch (every step sees the "
                        "whole training set), so there is no batch to share between workers: use --workers 1")
    if str(cfg.device).strip().lower() == "mps":
        raise UserError("--workers > 1 runs on CPU (gloo) or CUDA (NCCL), not mps")
    require_ray()


def reduction_of(objective: Any) -> str:
    """How the objective's loss reduces over the rows of a batch: its `reduction` attribute, "mean"
    when it has none (every core objective averages)."""
    reduction = getattr(objective, "reduction", "mean")
    if reduction not in REDUCTIONS:
        raise UserError(f"objective {type(objective).__name__} has reduction {reduction!r}; "
                        f"distributed training knows {', '.join(REDUCTIONS)}")
    return reduction


# ------------------------------------------------------------------------------- batch sharding
def _rows(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, (tuple, list)):
        return _rows(batch[0])
    if isinstance(batch, dict):
        return _rows(next(iter(batch.values())))
    raise TypeError(f"cannot shard a batch of type {type(batch).__name__}")


def _slice(batch: Any, lo: int, hi: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi]
    if isinstance(batch, (tuple, list)):
        return type(batch)(_slice(b, lo, hi) for b in batch)
    if isinstance(batch, dict):
        return {k: _slice(v, lo, hi) for k, v in batch.items()}
    return batch


class ShardedSource:
    """Rank `rank`'s share of every global batch of `source`, with the weights that make the DDP
    average of the ranks' losses equal the global batch's loss. Every rank draws the same
    permutation from the same generator state, so the global batches are the 1-worker batches."""

    def __init__(self, source: BatchSource, rank: int, world: int, reduction: str) -> None:
        self.source, self.rank, self.world, self.reduction = source, rank, world, reduction

    def n_batches(self, batch_size: int) -> int:
        return self.source.n_batches(batch_size)

    def bounds(self, n: int) -> tuple[int, int]:
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def batches(self, batch_size: int, shuffle: bool, generator: torch.Generator) -> Iterator[dict]:
        for batch in self.source.batches(batch_size, shuffle, generator):
            n = _rows(batch)
            lo, hi = self.bounds(n)
            if hi <= lo:  # fewer rows than workers: join the all-reduce with a zero contribution
                yield {"batch": batch, "weight": 0.0, "share": 0.0}
                continue
            share = (hi - lo) / n
            weight = self.world * share if self.reduction == "mean" else float(self.world)
            yield {"batch": _slice(batch, lo, hi), "weight": weight, "share": share}


class _ObjectiveStep(nn.Module):
    """The objective as the forward of a module, so DDP sees one forward per backward whatever the
    objective does with the model (two passes, encode/decode)."""

    def __init__(self, model: nn.Module, objective: Any) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: Any, epoch: float) -> tuple[torch.Tensor, dict]:
        return self.objective(self.model, batch, epoch, True)


class _WeightedObjective:
    """The Trainer-facing objective on a shard: the DDP step, the loss times the shard's weight, the
    parts times its share of the rows (summed over the ranks they are the batch's parts)."""

    def __call__(self, ddp: nn.Module, shard: dict, epoch: float, training: bool) -> tuple[torch.Tensor, dict]:
        loss, parts = ddp(shard["batch"], epoch)
        return loss * shard["weight"], {k: float(v) * shard["share"] for k, v in parts.items()}


# ---------------------------------------------------------------------------------- the worker
def _train_worker(config: dict) -> None:
    """Ray Train's per-worker loop: the Trainer's epoch loop on this rank's shard under DDP."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist
    from safetensors.torch import save_file
    from torch.nn.parallel import DistributedDataParallel

    from core.device import seed_everything
    from core.trainparts import BestEpoch, History, make_optimizer

    p = config["payload"]
    trainer = p["trainer"]  # a core.train.Trainer
    model: nn.Module = p["model"]
    train_src, val_src, monitor = p["train"], p["val"], p["monitor"]
    cfg = copy.copy(trainer.config)
    cfg.progress = False
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(p["threads"])
    use_cuda = p["use_gpu"]
    device = ray.train.torch.get_device() if use_cuda else torch.device("cpu")
    seed_everything(cfg.seed)
    torch.manual_seed(cfg.seed + rank)  # dropout / corruption noise: a different stream per rank
    generator = torch.Generator()
    generator.set_state(p["generator_state"])  # after the validation split: the 1-worker shuffles

    model.to(device)
    optimizer = make_optimizer(model, cfg)
    ddp = DistributedDataParallel(_ObjectiveStep(model, trainer.objective).to(device),
                                  device_ids=[device.index] if use_cuda and device.index is not None else None)
    step_trainer = type(trainer)(cfg, _WeightedObjective())
    shards = ShardedSource(train_src, rank, world, reduction_of(trainer.objective))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    n_batches = max(1, shards.n_batches(cfg.batch_size))
    history = History()
    best = BestEpoch(cfg, history, monitor, None, None)
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        ddp.train()
        total, count, parts_sum = step_trainer._minibatch_epoch(ddp, optimizer, scaler, shards, generator, epoch,
                                                                n_batches, device, use_amp, amp_dtype)
        keys = sorted(parts_sum)
        sums = torch.tensor([total] + [parts_sum[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(sums)  # every rank: the batches' losses and parts, as 1 worker computes them
        sums = sums.cpu()
        train_loss = float(sums[0]) / world / max(count, 1)
        history.train_loss.append(train_loss)
        history.parts.append({k: float(sums[i + 1]) / max(count, 1) for i, k in enumerate(keys)})
        monitored = train_loss
        if monitor is not None or val_src is not None:
            value = torch.zeros(1, dtype=torch.float64, device=device)
            if rank == 0:  # rank 0 decides; every rank then stops (or keeps weights) on the same number
                if monitor is not None:
                    model.eval()
                    with torch.no_grad():
                        value[0] = float(monitor(model))
                else:
                    value[0] = trainer.evaluate(model, val_src, epoch + 1.0, device)
            dist.broadcast(value, src=0)
            val_loss = float(value.cpu()[0])
            history.val_loss.append(val_loss)
            monitored = val_loss
        if best.end_epoch(model, epoch, train_loss, monitored):
            break
    best.finish(model)
    model.eval()
    history.seconds = time.perf_counter() - start
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="ae-ddp-") as tmp:
            state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
            save_file(state, os.path.join(tmp, "model.safetensors"))
            with open(os.path.join(tmp, "history.json"), "w") as fh:
                json.dump(history.to_dict(), fh)
            ray.train.report({"epochs": len(history.train_loss)}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report({"epochs": len(history.train_loss)}, checkpoint=None)


# ---------------------------------------------------------------------------------- the driver
def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _start_ray(workers: int) -> tuple[bool, int]:
    """Connect to Ray: the instance this process already runs, the cluster in RAY_ADDRESS (`auto`: the
    one `ray start` runs on this machine), else a new local instance of our own with at least
    `workers` CPUs, even when another process runs one (its CPUs are that process's to count).
    Returns (whether we started it, the CPUs a worker takes): on our own instance the machine's cores
    shared out (1 each on 2 cores and 2 workers), on anyone else's 1, which any node with a free CPU
    can place."""
    import ray

    if ray.is_initialized():
        return False, 1
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**quiet)
        return True, 1
    cpus = _local_cpus()
    ray.init(address="local", num_cpus=max(cpus, workers), **quiet)
    return True, max(1, cpus // workers)


def _original_error(exc: BaseException) -> BaseException:
    """The exception a worker raised, out of Ray Train's wrappers."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        exc = failures[min(failures)]
    for _ in range(5):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            exc = cause
            continue
        as_cause = getattr(exc, "as_instanceof_cause", None)
        if callable(as_cause):
            try:
                inner = as_cause()
            except Exception:  # noqa: BLE001 - keep what we have
                break
            if inner is exc:
                break
            exc = inner
            continue
        break
    return exc


def fit_distributed(trainer: Trainer, model: nn.Module, train_src: BatchSource, val_src: BatchSource | None,
                    monitor: Any, generator: torch.Generator) -> History:
    """Train `model` in place on `trainer.config.workers` Ray Train workers; returns rank 0's History
    (its `seconds` is the driver's wall time, Ray start-up included)."""
    from core.device import resolve_device
    from core.trainparts import History

    require_ray()
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from safetensors.torch import load_file

    cfg = trainer.config
    workers = cfg.workers
    reduction_of(trainer.objective)  # an unknown reduction fails here, not in N workers
    use_gpu = resolve_device(cfg.device).type == "cuda"
    start = time.perf_counter()
    model.to("cpu")
    started, threads = _start_ray(workers)
    storage = tempfile.mkdtemp(prefix="ae-ray-train-")
    try:
        available = ray.cluster_resources().get("GPU" if use_gpu else "CPU", 0)
        needed = workers * (1 if use_gpu else threads)
        if available < needed:
            raise UserError(f"--workers {workers} needs {needed:g} {'GPUs' if use_gpu else 'CPUs'} in the Ray "
                            f"cluster, which has {available:g}")
        payload = {"trainer": trainer, "model": model, "train": train_src, "val": val_src, "monitor": monitor,
                   "generator_state": generator.get_state(), "threads": 1 if use_gpu else threads,
                   "use_gpu": use_gpu}
        log.info("%s: data-parallel on %d Ray Train workers (%s)", cfg.description, workers,
                 "nccl" if use_gpu else "gloo")
        ray_trainer = TorchTrainer(
            _train_worker, train_loop_config={"payload": payload},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                                   resources_per_worker=None if use_gpu else {"CPU": threads}),
            run_config=ray.train.RunConfig(name="ae-train", storage_path=storage,
                                           failure_config=ray.train.FailureConfig(max_failures=0)))
        try:
            result = ray_trainer.fit()
        except Exception as exc:  # noqa: BLE001 - re-raise what the worker raised, not Ray's wrapper
            inner = _original_error(exc)
            if isinstance(inner, (UserError, FloatingPointError)):
                raise type(inner)(str(inner)) from None
            raise RuntimeError(f"distributed training failed: {type(inner).__name__}: {inner}") from None
        if result.checkpoint is None:
            raise RuntimeError("distributed training ended without rank 0's weights")
        with result.checkpoint.as_directory() as ckpt:
            state = load_file(os.path.join(ckpt, "model.safetensors"))
            with open(os.path.join(ckpt, "history.json")) as fh:
                history = History.from_dict(json.load(fh))
        model.load_state_dict(state)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()
    model.to(resolve_device(cfg.device))
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
