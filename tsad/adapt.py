"""Online adaptation (`--adapt`): the detector keeps learning from the rows it judged normal.

Real series drift (a sensor ages, traffic grows): a model fitted once on the first weeks reconstructs
later normal data worse and worse, and its errors climb towards the threshold. With `--adapt`,
`score` and `monitor` take a few gradient steps every `every` rows on windows drawn from the last
`recent` rows, with the loss on the rows judged normal only (an anomaly is not learned as the new
normal; a window holding one still teaches its other rows). Each round starts a fresh Adam (so the
weights are the whole state), draws its windows with a generator seeded by (model seed, round), and
happens after an exact row count, so the result does not depend on how the rows were batched:
`score` over a whole file, `score --state` in chunks across runs and `monitor` in micro-batches
across restarts give the same scores row for row. The adapted weights are checkpointed as
safetensors beside the JSON state (never pickled); the threshold and calibration stay the
training's, which is what makes the lowered errors count.

Rounds are deterministic for a seed on one machine; like any floating-point training they are not
bit-identical across devices (CPU vs CUDA).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.corruption import Corruption
from core.errors import UserError
from core.losses import BetaSchedule
from core.objective import ReconstructionObjective

if TYPE_CHECKING:
    from tsad.config import DetectorConfig
    from tsad.detector import Scores, WindowDetector


def check_adaptable(config: DetectorConfig) -> None:
    """Refuse, before any input is read or network trained, a detector that adaptation cannot serve."""
    if config.network.ensemble > 1:
        raise UserError(f"--adapt adapts one network; this detector averages {config.network.ensemble} "
                        "(network.ensemble): train it without --ensemble to adapt it")


class OnlineAdapter:
    """One series' adaptation: its recent rows and verdicts, its round count and adapted weights.

    `state()` is plain JSON; `weights` (None until the first round) go to safetensors by the caller."""

    def __init__(self, det: WindowDetector) -> None:
        check_adaptable(det.config)
        self.det, self.config = det, det.config.adapt
        self.rows = 0  # rows seen by this series, earlier runs included
        self.rounds = 0
        self.recent = np.empty((0, len(det.channel_names_)))
        self.normal = np.empty(0, dtype=bool)
        self.weights: dict[str, torch.Tensor] | None = None
        self._base: dict[str, torch.Tensor] | None = None  # the trained weights, to put back
        # torch imports its compiler stack the first time an optimizer is built (about 1.5 s on a CPU):
        # pay it here, at start-up, rather than in the middle of a stream at the first round
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    # ----------------------------------------------------------------------------- scoring
    def rows_to_round(self) -> int:
        """Rows that can still be scored with the current weights before the next round."""
        return self.config.every - self.rows % self.config.every

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The detector scores with this series' weights inside the block (several series share a
        detector in `score`), and with its trained weights again after it."""
        if self.weights is None:
            yield
            return
        with self._swapped():
            yield

    @contextmanager
    def _swapped(self) -> Iterator[None]:
        module = self.det.module_
        if self._base is None:
            self._base = {k: v.detach().clone() for k, v in module.state_dict().items()}
        if self.weights is not None:
            module.load_state_dict(self.weights)
        try:
            yield
        finally:
            module.load_state_dict(self._base)

    def observe(self, values: np.ndarray, anomalous: np.ndarray) -> None:
        """Rows just scored (at most `rows_to_round()` of them) and their verdicts; adapts when a
        round is due."""
        keep = self.config.recent
        self.recent = np.vstack([self.recent, values])[-keep:]
        self.normal = np.concatenate([self.normal, ~np.asarray(anomalous, dtype=bool)])[-keep:]
        self.rows += len(values)
        if self.rows % self.config.every == 0:
            self._round()

    def _round(self) -> None:
        self.rounds += 1
        det, cfg = self.det, self.config
        w = det.window
        if len(self.recent) < w:
            return
        # the loss covers only rows judged normal, so a window with an alert in it still teaches its
        # other rows (a stream that drifts past the threshold now and then keeps adapting)
        good = np.concatenate([[0], np.cumsum(self.normal)])
        starts = np.flatnonzero(good[w:] - good[:-w] > 0)
        if not len(starts):
            return
        scaled = det.scaler_.transform(self.recent).astype(np.float32)
        normal = self.normal.astype(np.float32)
        net_cfg = det.config.network
        objective = ReconstructionObjective(
            loss="masked_mse",
            corruption=Corruption(net_cfg.denoise, net_cfg.noise_level) if net_cfg.denoise else None,
            beta=BetaSchedule(beta=1e-3, warmup_epochs=1))
        device = det._placed_net()
        net = det._net
        cuda = [device.index or 0] if device.type == "cuda" else []
        with self._swapped(), torch.random.fork_rng(devices=cuda), _one_thread():
            torch.manual_seed(det.seed * 1_000_003 + self.rounds)
            gen = torch.Generator().manual_seed(det.seed * 1_000_003 + self.rounds)
            optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            net.train()
            try:
                for _ in range(cfg.steps):
                    pick = starts[torch.randint(len(starts), (min(cfg.batch, len(starts)),), generator=gen).numpy()]
                    x = torch.from_numpy(np.stack([scaled[s:s + w].T for s in pick])).to(device)
                    mask = torch.from_numpy(np.stack([normal[s:s + w] for s in pick]))[:, None, :].expand_as(x)
                    loss, _ = objective(net, (x, x, mask.to(device)), epoch=1e9, training=True)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            finally:
                net.eval()
            self.weights = {k: v.detach().cpu().clone() for k, v in det.module_.state_dict().items()}

    # ------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {"settings": dataclasses.asdict(self.config), "rows": self.rows, "rounds": self.rounds,
                "recent": self.recent.tolist(), "normal": self.normal.astype(int).tolist(),
                "adapted": self.weights is not None}

    def restore(self, state: dict[str, Any], weights: dict[str, torch.Tensor] | None, where: str) -> None:
        """Continue from `state()` and the weights saved with it; a state written with other
        adaptation settings, or missing its weights, is refused rather than silently mixed."""
        if state.get("settings") != dataclasses.asdict(self.config):
            raise UserError(f"{where} was written with other --adapt settings ({state.get('settings')}); "
                            f"use a new state")
        if state.get("adapted") and weights is None:
            raise UserError(f"{where} has adapted weights that are missing; use a new state")
        recent = np.asarray(state["recent"], dtype=float)
        self.recent = recent.reshape(len(recent), len(self.det.channel_names_))
        self.normal = np.asarray(state["normal"], dtype=bool)
        self.rows, self.rounds = int(state["rows"]), int(state["rounds"])
        if state.get("adapted"):
            expected = self.det.module_.state_dict()
            if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in expected):
                raise UserError(f"{where} has adapted weights that do not fit the model; use a new state")
            self.weights = {k: v.to(expected[k].dtype) for k, v in weights.items()}


@contextmanager
def _one_thread() -> Iterator[None]:
    """A round on one CPU thread, whatever the command runs on (the monitor one, `score` torch's
    default): float sums in another order differ in the last bits, and Adam turns such noise in a
    near-zero gradient (a centred network's output bias has one) into a step of the full learning
    rate, so rounds on different thread counts drift apart. A round is 5 small steps: one thread is
    enough."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def concat_scores(parts: list[Scores]) -> Scores:
    """Consecutive rows' Scores as one."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    alert = None if first.alert_score is None else np.concatenate([p.alert_score for p in parts])
    return dataclasses.replace(
        first, score=np.concatenate([p.score for p in parts]), score_prob=np.concatenate([p.score_prob for p in parts]),
        is_anomaly=np.concatenate([p.is_anomaly for p in parts]),
        contributions=np.concatenate([p.contributions for p in parts]), alert_score=alert)


def prefixed(weights: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Several series' weights as one flat safetensors dict: "<n>/<parameter>"."""
    return {f"{n}/{k}": v.contiguous() for n, ws in weights.items() for k, v in ws.items()}


def unprefixed(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        n, _, name = key.partition("/")
        out.setdefault(n, {})[name] = value
    return out
