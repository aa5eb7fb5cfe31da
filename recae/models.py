"""The recommender's networks as data: one registry entry per model (network, objective, recipe, flags).

- course: the classic course example, 20-10-20 sigmoid, RMSprop(weight decay 0.5), loss only on
  rated movies, gradients never zeroed; batched (64 users a step) instead of one user per step, with
  the per-user losses summed so the accumulated gradient is the same sum over users as the
  original's, and lr 0.02 instead of 0.01 because it takes 15x fewer steps per epoch.
- autorec: I-AutoRec (Sedhain et al. 2015): each item's vector of user ratings in, one sigmoid
  layer of 500, identity out, L2 on the weights, loss on observed ratings only; trained full-batch
  with L-BFGS as in the paper (mini-batch Adam stalls near RMSE 0.93 on ML-100K u1, L-BFGS 0.904),
  computing only the observed entries' outputs (ObservedEntries: the same loss and gradients).
- deeprec: NVIDIA DeepRec style, user-based: SELU, heavy dropout on the code, dense re-feeding.
- multdae / multvae (Liang et al. 2018): implicit positives (rating ≥ 4), L2-normalised input with
  dropout, tanh, multinomial likelihood. Sized for MovieLens-100K's 943 users, which overfit the
  paper's 600-200 network in 30 epochs: the VAE has one 300-unit layer, a 64-d latent, input
  dropout 0.7, and anneals its KL weight up to β = 0.02 (the paper caps it at 0.2, but its anneal
  schedule never gets past about 0.05 in its own runs). Picked among 4 variants by validation-user
  NDCG@100. Given validation users, both keep their best epoch (up to 150).
- recvae (Shenbin et al. 2020, recae.recvae): Mult-VAE's likelihood with a dense layer-normed swish
  encoder, a composite prior (standard, wide and previous-epoch posterior), a KL weight γ·|x| that
  grows with the user's positives, and training that alternates encoder and decoder passes (its own
  loop, the entry's `trainer`). The paper's 600-unit encoder (3 layers) and 200-d latent, γ = 0.01
  (the paper's 0.005 came second), batch 64, lr 5e-4: chosen among 8 settings (hidden 300/600 ×
  latent 64/200 × γ 0.005/0.01) by seed-0 validation-user NDCG@100 (bench/recae_recvae.py). Given
  validation users it keeps its best epoch (up to 50; each epoch is 3 encoder + 1 decoder passes).
- glocalk: GLocal-K (Han et al. 2021, recae.glocalk): item-based like autorec, two sigmoid layers of
  500 whose weights are masked by learned finite-support (local) kernels, pre-trained with full-batch
  L-BFGS, then fine-tuned with a global convolution kernel (mixed from a kernel bank by the items'
  pooled predictions) applied to the rating rows first; its own two-phase loop (the entry's
  `trainer`), its own L2 weights (the recommender's `l2` does not apply): l2 1e-3, kernel sparsity 5e-7,
  22 pre-training + 14 fine-tuning epochs of 10 L-BFGS iterations, chosen on a validation split of
  u1.base (bench/recae_glocalk.py); u1 RMSE 0.901 (autorec 0.904, the paper 0.889).
- glocalk-users: the same network reading a user's ratings of every item (rows = users), l2 5e-4,
  8 + 2 epochs, tuned the same way (bench/recae_glocalk_users.json); weaker alone (u1 0.930), it is
  the stack's user-based member.
- stack (recae.stack): glocalk, autorec and glocalk-users, blended by least-squares weights fitted
  on a held-out 5 % of the ratings it is given, then every member refit on all of them; u1 RMSE
  0.891 (bench/recae_u1_stack.py) for about 3x glocalk's training time.

Adding a model = one `register(RecModel(...))` below + its tests; the recommender, the trainer
set-up, the evaluation protocols and the CLI read everything they need from the entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from core.dense import DenseAE, DenseConfig
from core.errors import UserError
from core.losses import BetaSchedule, masked_mse
from core.models import dense_vae
from core.objective import ReconstructionObjective
from core.sampled import Pattern, sampled_product, sparse_mm
from core.train import History, Objective, TrainConfig
from recae.glocalk import GLocalKConfig, GLocalKNet, GLocalKObjective, GLocalKTrainer
from recae.recvae import AlternatingTrainer, RecVAEConfig, RecVAENet, RecVAEObjective

Inputs = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]  # dense rating rows -> (input, target)


class FitLoop(Protocol):
    """What trains a module: core.train.Trainer, or a model's own loop with the same interface."""

    def fit(self, model: nn.Module, train: Any, val: Any = None) -> History: ...


TrainerFactory = Callable[[TrainConfig, Objective], FitLoop]  # (settings, objective) -> the loop


@dataclass(frozen=True)
class Recipe:
    """Training defaults of a model (each can be overridden on the recommender)."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float = 0.0
    max_epochs_with_validation: int | None = None  # with validation users: train this long, keep the best epoch

    def default_epochs(self, validation: bool) -> int:
        if validation and self.max_epochs_with_validation is not None:
            return self.max_epochs_with_validation
        return self.epochs


def rating_inputs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit models: ratings in, the same ratings as the target (the loss masks the unrated zeros)."""
    return rows, rows


def positive_inputs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Implicit models: L2-normalised binary rows in, the binary rows as the multinomial target."""
    binary = (rows > 0).float()
    return binary / binary.norm(dim=1, keepdim=True).clamp_min(1e-12), binary


@dataclass(frozen=True)
class RecModel:
    """One model of the recommender: everything that differs between models, as data."""

    name: str
    # (n_inputs: items, or users if item_based; hidden) -> module; an entry with `activations` also
    # takes activation=NAME
    build: Callable[..., nn.Module]
    objective: Callable[[float, int], Objective]  # (l2, epochs) -> the training objective
    recipe: Recipe
    hidden: int | None = None  # default width of the layer `hidden` sets; None: a fixed shape that ignores it
    implicit: bool = False  # learns positives (rating >= threshold) and ranks items; else predicts ratings
    item_based: bool = False  # a row is an item's ratings by every user (scores the full matrix once)
    accumulate_grad: bool = False  # never zero gradients (reproduces code that forgot zero_grad)
    l2_penalty: bool = False  # the objective adds l2/2·‖W‖² (the recommender's `l2` matters)
    # a training loop of its own (same settings, objective, validation monitor and History as core's
    # Trainer), for a model whose training is not one optimiser over one loss; None: core Trainer
    trainer: TrainerFactory | None = None
    # explicit models: the candidate settings (AutoencoderRecommender parameters; {} is the recipe as
    # it is) that recae.selection tries on a validation split of the user's own ratings, in order,
    # at most 6; a setting the user pinned is kept in every candidate. () : nothing to search
    grid: tuple[dict[str, Any], ...] = ()
    # can learn the residuals of the user+item bias baseline (the recommender's `residual`): ratings
    # minus the baseline in, the same residuals out, trained full-batch on the observed entries only
    # (ObservedEntries); needs an item-based one-hidden-layer DenseAE (I-AutoRec's shape)
    residual: bool = False
    activations: tuple[str, ...] = ()  # the hidden activations `build` accepts (the `activation` setting)
    # a stack (recae.stack): the explicit entries whose predictions it blends; its own build,
    # objective and recipe are never used (the members train with theirs)
    members: tuple[str, ...] = ()

    @property
    def inputs(self) -> Inputs:
        return positive_inputs if self.implicit else rating_inputs


REGISTRY: dict[str, RecModel] = {}


def register(entry: RecModel) -> RecModel:
    if entry.name in REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    for name in entry.members:  # a stack's members: explicit single networks registered before it
        member = REGISTRY.get(name)
        if member is None or member.implicit or member.members or entry.implicit:
            raise ValueError(f"stack {entry.name!r}: {name!r} is not a registered explicit model")
    REGISTRY[entry.name] = entry
    return entry


def model_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get_model(name: str) -> RecModel:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}") from None


class SparseRows:
    """Mini-batches of csr rows densified one batch at a time (never the whole matrix), turned into
    (input, target) pairs by the model's `inputs`."""

    def __init__(self, matrix: sp.csr_matrix, inputs: Inputs) -> None:
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        self.inputs = inputs

    def n_batches(self, batch_size: int) -> int:
        return -(-self.matrix.shape[0] // batch_size)

    def batches(self, batch_size: int, shuffle: bool, generator: torch.Generator) -> Iterator[Any]:
        n = self.matrix.shape[0]
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            yield self.inputs(torch.from_numpy(self.matrix[order[start:start + batch_size]].toarray()))


class ObservedEntries:
    """The observed entries of a csr matrix as one full batch (crow/col/values tensors), for the
    full-batch models trained on observed entries only (autorec, plain or residual): the same loss and
    gradients as the dense network's masked loss without computing its unobserved outputs (about
    50x less work on a 610 x 9.1k catalogue), and a stored value of 0 (a residual) counts as
    observed, where a dense row's 0 would mean "unrated"."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)  # keeps explicit zeros
        self.matrix.sort_indices()

    def n_batches(self, batch_size: int) -> int:
        return 1

    def batches(self, batch_size: int, shuffle: bool, generator: torch.Generator) -> Iterator[Any]:
        m = self.matrix
        yield {"crow": torch.from_numpy(m.indptr.astype(np.int64)), "col": torch.from_numpy(m.indices.astype(np.int64)),
               "values": torch.from_numpy(m.data), "shape": torch.tensor(m.shape)}


def observed_outputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """A one-hidden-layer DenseAE's outputs at the observed entries of an ObservedEntries batch,
    in its csr order: hidden = act(X W1ᵀ + b1) from the sparse rows, then each observed (row, col)
    decoded alone (a sampled matrix product)."""
    encoder, decoder = model.encoder, model.decoder
    if len(encoder) != 2 or len(decoder) != 2 or not isinstance(model.input_dropout, nn.Identity) \
            or not isinstance(model.code_dropout, nn.Identity):
        raise ValueError("observed-entry training needs a one-hidden-layer DenseAE without dropout")
    shape = tuple(int(v) for v in batch["shape"].tolist())
    pattern = batch.get("pattern")
    if pattern is None:  # built once per batch (L-BFGS evaluates the same batch many times)
        pattern = batch["pattern"] = Pattern.from_csr(batch["crow"], batch["col"], shape)
    hidden = encoder[1](sparse_mm(pattern.csr(batch["values"]), encoder[0].weight.T) + encoder[0].bias)
    sampled = sampled_product(hidden, decoder[0].weight.T, pattern)
    return decoder[1](sampled + decoder[0].bias[batch["col"]])


# ------------------------------------------------------------------------------------ objectives
class RefeedObjective:
    """DeepRec's dense re-feeding: a masked step on the real ratings, then a step that feeds the
    dense output back in with itself as the target (the fixed point of a good model)."""

    def __call__(self, model: nn.Module, batch: Any, epoch: float, training: bool) -> tuple[torch.Tensor, dict]:
        x, target = batch
        out = model(x)
        loss = masked_mse(out, target)
        if training:
            dense = out.detach()
            loss = loss + torch.nn.functional.mse_loss(model(dense), dense)
        return loss, {"recon": float(loss.detach())}


class CourseObjective:
    """The course's loss: squared error on rated movies (unrated outputs zeroed), averaged over all
    movies per user and summed over the users of a batch. The original steps once per user and
    never resets its gradients (it omits zero_grad, and its result depends on that, see
    TrainConfig.accumulate_grad), so each step follows the sum of every user gradient so far;
    summing over the batch keeps that sum the same when 64 users share a step (a batch mean would
    shrink it 64-fold against the weight decay)."""

    reduction = "sum"  # the loss sums over the rows of a batch (core.distributed weights it by the workers)

    def __call__(self, model: nn.Module, batch: Any, epoch: float, training: bool) -> tuple[torch.Tensor, dict]:
        x, target = batch
        out = model(x) * (target > 0)
        per_user = ((out - target) ** 2).mean(dim=1)
        return per_user.sum(), {"recon": float(per_user.detach().mean())}


class L2Objective:
    """I-AutoRec: masked MSE plus λ/2·‖W‖² on the weight matrices (not the biases); on dense rows
    (0 = unrated) or on an ObservedEntries batch (every stored entry observed)."""

    def __init__(self, reg: float) -> None:
        self.reg = reg

    def __call__(self, model: nn.Module, batch: Any, epoch: float, training: bool) -> tuple[torch.Tensor, dict]:
        if isinstance(batch, dict):
            loss = ((observed_outputs(model, batch) - batch["values"]) ** 2).mean()
        else:
            x, target = batch
            loss = masked_mse(model(x), target)
        rec = float(loss.detach())
        if self.reg > 0:
            loss = loss + self.reg / 2 * sum((p ** 2).sum() for n, p in model.named_parameters() if "weight" in n)
        return loss, {"recon": rec}


def _annealed_multinomial(l2: float, epochs: int) -> Objective:
    beta = BetaSchedule(beta=0.02, warmup_epochs=max(1, epochs // 2))
    return ReconstructionObjective(loss="multinomial", beta=beta)


# ----------------------------------------------------------------------------------------- models
register(RecModel(
    name="course",
    build=lambda n, hidden: DenseAE(DenseConfig(input_dim=n, hidden=[20], code_size=10, activation="sigmoid",
                                                code_activation="sigmoid", out_activation=None)),
    objective=lambda l2, epochs: CourseObjective(),
    recipe=Recipe(epochs=200, batch_size=64, optimizer="rmsprop", lr=0.02, weight_decay=0.5),
    accumulate_grad=True, grid=({}, {"epochs": 50})))

register(RecModel(
    name="autorec",
    build=lambda n, hidden, activation="sigmoid": DenseAE(DenseConfig(input_dim=n, hidden=[], code_size=hidden,
                                                                      code_activation=activation,
                                                                      out_activation=None)),
    objective=lambda l2, epochs: L2Objective(l2),
    recipe=Recipe(epochs=20, batch_size=64, optimizer="lbfgs", lr=1.0, weight_decay=0.0),
    hidden=500, item_based=True, l2_penalty=True, residual=True, activations=("sigmoid", "identity"),
    # cheapest first, so that a time budget still reaches the later ones on a large catalogue (where
    # the recipe alone took 9 minutes and lost to the bias baseline): the residuals of the bias
    # baseline (observed entries only: seconds), then stronger L2 and narrower / shorter fits for
    # sparser catalogues, then the ML-100K recipe. The residual settings are the best identity and the
    # best sigmoid setting of bench/recae_sparse_probe.py's validation grid (generated 610 x 9.1k)
    grid=({"residual": True, "activation": "identity", "l2": 0.01, "epochs": 10},
          {"residual": True, "activation": "sigmoid", "l2": 0.003, "epochs": 10},
          {"l2": 0.1, "hidden": 200}, {"l2": 0.01, "epochs": 8}, {"l2": 0.03}, {})))

register(RecModel(
    name="deeprec",
    build=lambda n, hidden: DenseAE(DenseConfig(input_dim=n, hidden=[hidden], code_size=hidden, activation="selu",
                                                code_activation="selu", out_activation=None, code_dropout=0.8)),
    objective=lambda l2, epochs: RefeedObjective(),
    recipe=Recipe(epochs=60, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0),
    hidden=256, grid=({}, {"epochs": 20}, {"epochs": 20, "hidden": 64})))

register(RecModel(
    name="multdae",
    build=lambda n, hidden: DenseAE(DenseConfig(input_dim=n, hidden=[600], code_size=hidden, activation="tanh",
                                                code_activation="tanh", input_dropout=0.5)),
    objective=lambda l2, epochs: ReconstructionObjective(loss="multinomial"),
    recipe=Recipe(epochs=50, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=1e-5,
                  max_epochs_with_validation=150),
    hidden=200, implicit=True))

register(RecModel(  # items -> 300 tanh -> 64-d Gaussian latent -> 300 -> items
    name="multvae",
    build=lambda n, hidden: dense_vae(n, [hidden], 64, activation="tanh", code_activation="tanh",
                                      input_dropout=0.7),
    objective=_annealed_multinomial,
    recipe=Recipe(epochs=100, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0,
                  max_epochs_with_validation=150),
    hidden=300, implicit=True))


def recvae_model(name: str = "recvae", hidden: int = 600, latent: int = 200, gamma: float = 0.01,
                 layers: int = 3, epochs: int = 30, max_epochs: int = 50, batch_size: int = 64,
                 lr: float = 5e-4, encoder_passes: int = 3, decoder_passes: int = 1) -> RecModel:
    """A RecVAE entry; the registered `recvae` uses the defaults, a benchmark registers variants
    under other names to choose among them on validation users."""
    return RecModel(
        name=name,
        build=lambda n, width: RecVAENet(RecVAEConfig(input_dim=n, hidden=width, latent_size=latent, layers=layers)),
        objective=lambda l2, n_epochs: RecVAEObjective(gamma=gamma),
        recipe=Recipe(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr,
                      max_epochs_with_validation=max_epochs),
        hidden=hidden, implicit=True,
        trainer=partial(AlternatingTrainer, encoder_passes=encoder_passes, decoder_passes=decoder_passes))


register(recvae_model())


def glocalk_model(name: str = "glocalk", hidden: int = 500, pretrain_epochs: int = 22, finetune_epochs: int = 14,
                  l2: float = 1e-3, sparsity: float = 5e-7, conv_size: int = 3, conv_axes: str = "users",
                  lbfgs_lr: float = 1.0) -> RecModel:
    """A GLocal-K registry entry (recae.models.RecModel); the registered `glocalk` carries the
    settings chosen on a validation split of u1.base (bench/recae_glocalk.py), a benchmark registers
    variants under other names. An epoch is 10 L-BFGS iterations (TrainConfig.lbfgs_iterations);
    `epochs` given to the recommender is the total, split between the phases in these proportions.
    Its L2 weight is the entry's own: the recommender's `l2` (I-AutoRec's) does not apply."""
    if pretrain_epochs < 1 or finetune_epochs < 0:
        raise UserError("GLocal-K needs at least one pre-training epoch and no negative fine-tuning epochs")
    total = pretrain_epochs + finetune_epochs
    return RecModel(
        name=name,
        build=lambda n, width: GLocalKNet(GLocalKConfig(input_dim=n, hidden=width, conv_size=conv_size,
                                                        conv_axes=conv_axes)),
        objective=lambda _l2, _epochs: GLocalKObjective(l2=l2, sparsity=sparsity),
        recipe=Recipe(epochs=total, batch_size=1, optimizer="lbfgs", lr=lbfgs_lr),
        hidden=hidden, item_based=True,
        trainer=partial(GLocalKTrainer, pretrain_share=pretrain_epochs / total))


register(glocalk_model(name="glocalk", pretrain_epochs=22, finetune_epochs=14, l2=1e-3, sparsity=5e-7))
register(replace(glocalk_model(name="glocalk-users", pretrain_epochs=8, finetune_epochs=2, l2=5e-4, sparsity=5e-7),
                 item_based=False))


def _members_train(*_args: Any, **_kwargs: Any) -> Any:
    raise TypeError("a stack has no network or objective of its own: its members train (recae.stack)")


register(RecModel(name="stack", build=_members_train, objective=_members_train,
                  recipe=Recipe(epochs=1, batch_size=1, optimizer="lbfgs", lr=1.0),
                  members=("glocalk", "autorec", "glocalk-users")))
