"""RecVAE (Shenbin, Alekseev, Tutubalina, Nikolenko, WSDM 2020): network, composite prior, loss and
its alternating training loop.

What differs from Mult-VAE, and why (each from the paper and its reference code):
- Encoder: dense layers with layer norm and swish, each layer adding the sum of all earlier layers'
  outputs to its own pre-activation (the reference code's "densely connected" encoder), so a deeper
  encoder trains as easily as one layer. Input: the L2-normalised binary row, dropout 0.5 on it
  while the encoder learns.
- Decoder: one linear layer latent → item logits, multinomial likelihood (as Mult-VAE).
- Composite prior: a mixture of N(0, I), a wide N(0, e^10·I) and the posterior of the encoder as it
  was after the previous epoch (a frozen copy), at weights 3/20, 3/4, 1/10 (the reference code's
  order). The old posterior term keeps each update near the last, like a trust region; the wide
  term stops a user's code from being pinned by either.
- β(x) = γ·|x|: the KL weight grows with the user's number of positives, so a user with 5 movies
  is regularised less than one with 300, instead of one β (or one annealing schedule) for all.
- Alternating training: per epoch, encoder passes (3) with the decoder fixed and input dropout, the
  old-encoder copy updated, then decoder passes (1) with the encoder fixed and no input dropout
  (the decoder should learn from the clean code of each user).

The trainer honours the core TrainConfig (epochs, batch size, optimiser, lr, weight decay, seed,
device, progress, restore_best, patience, clip_grad_norm; not amp, accumulate_grad, val_fraction
or lbfgs, which no implicit model's recipe uses) and returns a core History, so the recommender
keeps the best validation epoch, logs "kept epoch N of M" and saves the model as it does for the
others. The prior's frozen encoder is a training device only: it is not part of the saved network.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.device import resolve_device, seed_everything
from core.errors import UserError
from core.jobs.progress import progress_bar
from core.layers import ConfiguredModule
from core.specs import register_model
from core.train import BestEpoch, History, TrainConfig, as_source, make_optimizer, to_device
from core.variational import VAEOutput

LOG_2PI = math.log(2 * math.pi)
PAPER_MIXTURE = (3 / 20, 3 / 4, 1 / 10)  # standard normal, previous-epoch posterior, wide normal


def log_normal(z: torch.Tensor, mu: torch.Tensor | float, logvar: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(z; mu, e^logvar) (summed over dimensions by the caller)."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (logvar + LOG_2PI + (z - mu) ** 2 * torch.exp(-logvar))


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (an empty row stays zero); idempotent, so an already normalised
    input (recae.models.positive_inputs) passes through unchanged."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


# ------------------------------------------------------------------------------------------ network
@dataclass
class RecVAEConfig:
    """`layers` dense encoder layers of width `hidden` (3 as described in the paper, 5 in its code);
    `ln_eps` 0.1 is the reference code's layer-norm epsilon (a large one: with few positives per
    row the activations' variance is tiny and the default 1e-5 would blow it up)."""

    input_dim: int
    hidden: int = 600
    latent_size: int = 200
    layers: int = 3
    input_dropout: float = 0.5
    ln_eps: float = 0.1

    def validate(self) -> None:
        if min(self.input_dim, self.hidden, self.latent_size, self.layers) < 1:
            raise UserError("input_dim, hidden, latent_size and layers must be positive")
        if not 0.0 <= self.input_dropout < 1.0:
            raise UserError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.ln_eps <= 0:
            raise UserError("ln_eps must be positive")


class RecVAEEncoder(nn.Module):
    """Normalised rows → (mu, logvar). Layer i: LN(swish(W_i h_{i-1} + h_1 + … + h_{i-1}))."""

    def __init__(self, config: RecVAEConfig) -> None:
        super().__init__()
        widths = [config.input_dim] + [config.hidden] * config.layers
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(config.hidden, eps=config.ln_eps) for _ in range(config.layers))
        self.mu = nn.Linear(config.hidden, config.latent_size)
        self.logvar = nn.Linear(config.hidden, config.latent_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, earlier = x, None
        for dense, norm in zip(self.dense, self.norms):
            pre = dense(h) if earlier is None else dense(h) + earlier
            h = norm(F.silu(pre))
            earlier = h if earlier is None else earlier + h
        # clamped as core.variational does: exp(logvar) must stay finite in the KL and the prior
        return self.mu(h), self.logvar(h).clamp(-30.0, 20.0)


class RecVAENet(ConfiguredModule):
    """`encoder` and `decoder` are separate submodules because training alternates between them."""

    def __init__(self, config: RecVAEConfig) -> None:
        super().__init__(config)
        self.encoder = RecVAEEncoder(config)
        self.decoder = nn.Linear(config.latent_size, config.input_dim)

    @property
    def code_dim(self) -> int:
        return self.config.latent_size

    def encode_stats(self, x: torch.Tensor, dropout: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x); input dropout only in training mode and when `dropout` (the
        decoder passes turn it off)."""
        x = F.dropout(l2_normalise(x), self.config.input_dropout, training=self.training and dropout)
        return self.encoder(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_stats(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, dropout: bool = True) -> VAEOutput:
        mu, logvar = self.encode_stats(x, dropout)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return VAEOutput(self.decode(z), mu, logvar)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Scores: decoder logits at the posterior mean (no sampling), as Mult-VAE."""
        return self.decode(self.encode_stats(x, dropout=False)[0])


register_model(RecVAENet, RecVAEConfig)


# ---------------------------------------------------------------------------------------- the prior
class CompositePrior(nn.Module):
    """p(z | x) = w1·N(0, I) + w2·q_old(z | x) + w3·N(0, e^wide_logvar·I), q_old the encoder frozen
    at the previous epoch. Its parameters never require gradients; `update` copies the live
    encoder's weights into it."""

    def __init__(self, encoder: RecVAEEncoder, weights: tuple[float, ...] = PAPER_MIXTURE,
                 wide_logvar: float = 10.0) -> None:
        super().__init__()
        self.old_encoder = copy.deepcopy(encoder).requires_grad_(False).eval()
        self.register_buffer("log_weights", torch.log(torch.tensor(weights, dtype=torch.float32)))
        self.wide_logvar = wide_logvar

    def update(self, encoder: RecVAEEncoder) -> None:
        self.old_encoder.load_state_dict(encoder.state_dict())

    def log_density(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(z | x) per latent dimension (batch, latent); `x` the encoder's input rows."""
        with torch.no_grad():
            mu_old, logvar_old = self.old_encoder(l2_normalise(x))
        parts = torch.stack([log_normal(z, 0.0, 0.0), log_normal(z, mu_old, logvar_old),
                             log_normal(z, 0.0, self.wide_logvar)], dim=-1)
        return torch.logsumexp(parts + self.log_weights, dim=-1)


# ------------------------------------------------------------------------------------------- loss
@dataclass
class RecVAEObjective:
    """Negative ELBO with β(x) = γ·|x|: mean over users of −Σ x_i log softmax(logits)_i + γ|x|·KL,
    the KL a one-sample estimate log q(z|x) − log p(z|x) at the sampled z (the prior is a mixture,
    so it has no closed form). Without a prior (plain Objective use) p is N(0, I)."""

    gamma: float = 0.005  # the paper's; the registered recvae uses 0.01, chosen on validation users
    mixture: tuple[float, float, float] = PAPER_MIXTURE
    wide_logvar: float = 10.0

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise UserError(f"gamma must be non-negative, got {self.gamma}")
        if len(self.mixture) != 3 or min(self.mixture) <= 0 or abs(sum(self.mixture) - 1) > 1e-6:
            raise UserError(f"the prior's mixture weights must be 3 positive numbers summing to 1, got {self.mixture}")

    def make_prior(self, encoder: RecVAEEncoder) -> CompositePrior:
        return CompositePrior(encoder, self.mixture, self.wide_logvar)

    def __call__(self, model: nn.Module, batch: Any, epoch: float, training: bool,
                 prior: CompositePrior | None = None, dropout: bool = True) -> tuple[torch.Tensor, dict]:
        x, target = batch
        mu, logvar = model.encode_stats(x, dropout=training and dropout)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if training else mu
        target = target.float()
        nll = -(F.log_softmax(model.decode(z).float(), dim=1) * target).sum(dim=1)
        log_p = prior.log_density(x, z) if prior is not None else log_normal(z, 0.0, 0.0)
        kl = (log_normal(z, mu, logvar) - log_p).sum(dim=1)
        loss = (nll + self.gamma * target.sum(dim=1) * kl).mean()
        return loss, {"recon": float(nll.detach().mean()), "kl": float(kl.detach().mean())}


# --------------------------------------------------------------------------------------- training
class AlternatingTrainer:
    """RecVAE's training loop, with core.train.Trainer's interface: `fit(model, train, val)` →
    History. An epoch is `encoder_passes` passes over the training rows updating the encoder (input
    dropout on), the prior's old encoder updated, then `decoder_passes` passes updating the decoder
    (input dropout off). `train_loss` is the mean loss of the epoch's decoder passes (no dropout,
    the epoch's final encoder); `parts` add the encoder passes' mean as `encoder_loss`. `val` is
    None or a callable such as a Monitor, evaluated after each epoch."""

    def __init__(self, config: TrainConfig, objective: RecVAEObjective, encoder_passes: int = 3,
                 decoder_passes: int = 1) -> None:
        if encoder_passes < 1 or decoder_passes < 1:
            raise UserError("RecVAE needs at least one encoder and one decoder pass per epoch")
        self.config, self.objective = config, objective
        self.encoder_passes, self.decoder_passes = encoder_passes, decoder_passes

    def fit(self, model: RecVAENet, train: Any, val: Any = None) -> History:
        cfg = self.config
        cfg.validate()
        if cfg.optimizer == "lbfgs":
            raise UserError("RecVAE trains with mini-batches; choose adam, adamw, rmsprop or sgd")
        if val is not None and not callable(val):
            raise UserError("RecVAE's validation is a callable metric (e.g. NDCG on validation users)")
        device = resolve_device(cfg.device)
        generator = seed_everything(cfg.seed)
        source = as_source(train)
        model.to(device)
        prior = self.objective.make_prior(model.encoder).to(device)
        enc_opt, dec_opt = make_optimizer(model.encoder, cfg), make_optimizer(model.decoder, cfg)
        history = History()
        start = time.perf_counter()
        with progress_bar(cfg.progress, with_status=True) as prog:
            task = prog.add_task(cfg.description, total=cfg.epochs, status="") if prog else None
            best = BestEpoch(cfg, history, val, prog, task)
            for epoch in range(cfg.epochs):
                model.train()
                enc_loss, _ = self._passes(model, enc_opt, source, generator, prior, True, epoch, self.encoder_passes)
                prior.update(model.encoder)
                loss, parts = self._passes(model, dec_opt, source, generator, prior, False, epoch, self.decoder_passes)
                history.train_loss.append(loss)
                history.parts.append({**parts, "encoder_loss": enc_loss})
                monitored = loss
                if val is not None:
                    model.eval()
                    with torch.no_grad():
                        monitored = float(val(model))
                    history.val_loss.append(monitored)
                if best.end_epoch(model, epoch, loss, monitored):
                    break
            best.finish(model)
        model.eval()
        history.seconds = time.perf_counter() - start
        return history

    def _passes(self, model: RecVAENet, optimizer: torch.optim.Optimizer, source: Any, generator: torch.Generator,
                prior: CompositePrior, encoder_step: bool, epoch: int, passes: int) -> tuple[float, dict[str, float]]:
        """`passes` epochs' worth of steps of one optimiser; mean loss and parts over all its batches.
        Only the stepped half's gradients are zeroed and used; the other half's are never stepped."""
        cfg = self.config
        total, count, parts_sum = 0.0, 0, {}
        for _ in range(passes):
            for batch in source.batches(cfg.batch_size, cfg.shuffle, generator):
                batch = to_device(batch, device=next(model.parameters()).device)
                loss, parts = self.objective(model, batch, float(epoch), True, prior=prior, dropout=encoder_step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}; "
                                             "try a lower learning rate or a smaller gamma")
                model.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                total += float(loss.detach())
                count += 1
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v
        return total / max(count, 1), {k: v / max(count, 1) for k, v in parts_sum.items()}

