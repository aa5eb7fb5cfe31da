"""Log anomaly detection on BGL_2k by the loglizer protocol, the autoencoder against PCA and
IsolationForest on the same template-count features, in one run.

Protocol (He et al., "Experience Report: System Log Analysis for Anomaly Detection", ISSRE 2016,
the loglizer toolkit), on Loghub's 2,000-line BGL sample:
1. parse every line (tsad.logparse, format `bgl`); a line is an *alert* when its first field is
   not `-`;
2. cut the file into consecutive windows of `window_lines` lines (a trailing partial window is
   dropped); a window is anomalous when any of its lines is an alert;
3. the first `train_fraction` of the windows, in file order, are the *training part*, the rest the
   *test part*; templates are mined (Drain, tsad.logtemplates with the BGL setting) on the training
   part's lines only; every line is then matched (`match`: a test line no training template covers
   counts as `other`);
4. features: tsad.logfeatures counts per window (the K most frequent training templates, `other`,
   `total`, per level), one matrix for every detector, then one transform of `FEATURES` applied
   row by row (raw `counts`, or `log1p`), from the same grid for every detector;
5. detectors are unsupervised and are trained on *every* window of the fitting part, alerts
   included, as loglizer does (BGL_2k's first windows hold most of its alerts: lines 104-300 are
   mostly alerts). `exclude_alerts=True` drops the alerted windows from fitting instead (a
   semi-supervised variant, reported apart).

Choosing on the training part only. The training part is split in time: its first
`1 − val_fraction` windows fit the detectors (the *fitting part*), its last `val_fraction`
windows (the *validation tail*) choose, with their labels,
- the threshold of every detector: the score that maximises F1 on the validation tail (a window
  is predicted anomalous when its score is ≥ the threshold); with no alert in the tail, the
  largest score on the fitting part;
- the autoencoder's setting among `AE_CANDIDATES`, the grid network x epochs x features: five
  networks (`AE_NETWORKS`: dense on a window of 1 row with a code of 4 or 16, dense on a window of
  4 rows with a code of 4 or 16, the conv net on 4 rows), 40 or 120 epochs, `log1p` or `counts`;
  the rule: the best median validation PR-AUC over the seeds, ties to the earlier candidate in the
  grid's order (cheaper network, then fewer epochs, then log1p, the product's transform). Every
  candidate's validation and test figures are kept (`ae_grid`); only the former chooses;
- the baselines' transform by the same rule on the same `FEATURES` grid (ties: counts), reported
  beside loglizer's own setting (raw counts) as `baselines_val_features`; `bar_met` asks the
  autoencoder to beat PCA and IsolationForest in both settings (`bar_margin`: its lead over the
  best of the four, negative when behind).
The window size (20 lines) and K (50) are fixed in advance (the issue's defaults), not tuned.
The test part is used for nothing but the reported numbers. PCA additionally reports Xu et al.'s
own threshold, the Q-statistic at α = 0.001, which needs no labels.

Detectors:
- autoencoder: tsad.detector.WindowDetector on the series of window rows (each row a count vector,
  channels = feature columns, standardised by the detector's scaler from the fitting rows). The
  detector's window is a run of `w` consecutive log windows and it scores causally with
  `causal_tail = 1`: the score of row t is the reconstruction error of row t in the run of rows
  t−w+1..t, so a row is judged with the preceding rows as context and never with later ones.
  WindowDetector's minimum window is 4, so `w = 1` (one count vector, as PCA and IsolationForest
  see it) runs the detector's own pieces (scaler, dense variant, objective, trainer) on single rows.
  Validation and test rows are scored in one pass over the whole series, so their contexts are the
  rows before them (counts only, no labels). Median over `seeds` with the spread (min, max).
- PCA (Xu et al., SOSP 2009, as loglizer implements it), on the transformed rows: TF-IDF weights
  (idf = log(n / df) over the fitting rows), zero-mean normalisation, the principal subspace
  keeping 95 % of the variance, score = the squared prediction error in the residual subspace (SPE).
- IsolationForest (scikit-learn, 100 trees, loglizer's choice) on the transformed rows, score =
  −score_samples; median over the same seeds.

Metrics, on the test windows: precision, recall and F1 at the chosen threshold, PR-AUC (average
precision), ROC-AUC, and VUS-PR (tsad.range_metrics, over the window sequence) when that module
is present.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError
from tsad.logfeatures import DEFAULT_TOP_K, LogCounts, build_vocabulary, count_frame
from tsad.logparse import LogRecord, ParseReport, parse_lines
from tsad.logtemplates import MinerConfig, TemplateMiner, config_for
from tsad.metrics import point_prf, pr_auc, roc_auc

try:
    from tsad.range_metrics import vus_pr
except ImportError:  # another module of the issue; the key is left out without it
    vus_pr = None

Q_ALPHA = 3.2905  # the standard normal quantile for α = 0.001 (Xu et al.'s Q-statistic)

# The feature transforms every detector chooses among on the validation tail (the same grid for all).
# "counts": the raw template counts (loglizer's IsolationForest input; PCA adds its own TF-IDF weights);
# "log1p": log(1 + count) (the product's transform, tsad.logmodel.FEATURES), which damps a bursty template.
# A per-column weighting such as TF-IDF is no option of its own: the autoencoder standardises every
# column and IsolationForest's splits do not depend on a column's scale, so it would change neither.
FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "counts": lambda x: np.asarray(x, dtype=float),
    "log1p": lambda x: np.log1p(np.asarray(x, dtype=float)),
}
DEFAULT_FEATURES = "log1p"  # a candidate without a "features" key (the product's transform)

# The autoencoder's networks, cheapest first (the tie-break order): a window of 1 row sees one count
# vector, as PCA and IsolationForest do; a window of 4 rows adds the 3 rows before as context; codes
# of 4 and 16 bracket the ~5-15 components PCA keeps on these features.
AE_NETWORKS: dict[str, dict[str, Any]] = {
    "dense-w1-c4": {"window": 1, "network.kind": "dense", "network.hidden": (32, 4)},
    "dense-w1-c16": {"window": 1, "network.kind": "dense", "network.hidden": (64, 16)},
    "dense-w4-c4": {"window": 4, "network.kind": "dense", "network.hidden": (64, 4)},
    "dense-w4-c16": {"window": 4, "network.kind": "dense", "network.hidden": (64, 16)},
    "conv-w4": {"window": 4, "network.kind": "conv", "network.channels": (32, 16), "network.kernel_size": 3},
}
AE_EPOCHS = (40, 120)
# The grid (chosen among on the validation tail, never on the test part): network x epochs x features,
# in this order, which is also the tie-break order (ties go to the earlier candidate).
AE_CANDIDATES: dict[str, dict[str, Any]] = {
    f"{net}-e{epochs}-{features}": {**spec, "training.epochs": epochs, "features": features}
    for net, spec in AE_NETWORKS.items() for epochs in AE_EPOCHS for features in ("log1p", "counts")}


# ------------------------------------------------------------------------------------- baselines
class LogPCA:
    """Xu et al.'s PCA detector (module docstring): fit on count rows, score = SPE."""

    def __init__(self, variance: float = 0.95) -> None:
        self.variance = variance

    def _weigh(self, x: np.ndarray) -> np.ndarray:
        return x * self.idf_ - self.mean_

    def fit(self, x: np.ndarray) -> LogPCA:
        x = np.asarray(x, dtype=float)
        n = len(x)
        df = (x > 0).sum(axis=0)
        self.idf_ = np.log(n / (df + 1e-8))
        weighted = x * self.idf_
        self.mean_ = weighted.mean(axis=0)
        z = weighted - self.mean_
        cov = z.T @ z / n
        lam, vec = np.linalg.eigh(cov)
        order = np.argsort(lam)[::-1]
        lam, vec = np.clip(lam[order], 0.0, None), vec[:, order]
        total = lam.sum()
        if total <= 0:
            k = 0
        else:
            k = int(np.searchsorted(np.cumsum(lam) / total, self.variance) + 1)
        self.k_ = min(k, len(lam))
        p = vec[:, :self.k_]
        self.residual_ = np.eye(len(lam)) - p @ p.T
        self.q_threshold_ = self._q_statistic(lam[self.k_:])
        return self

    @staticmethod
    def _q_statistic(rest: np.ndarray) -> float:
        """Jackson & Mudholkar's Q threshold at α = 0.001 from the residual eigenvalues."""
        phi = [float(np.sum(rest ** i)) for i in (1, 2, 3)]
        if phi[0] <= 0 or phi[1] <= 0:
            return float("inf")
        h0 = 1.0 - 2.0 * phi[0] * phi[2] / (3.0 * phi[1] ** 2)
        if h0 <= 0:
            return float("inf")
        base = Q_ALPHA * math.sqrt(2.0 * phi[1] * h0 ** 2) / phi[0] + 1.0 + phi[1] * h0 * (h0 - 1.0) / phi[0] ** 2
        return float(phi[0] * base ** (1.0 / h0)) if base > 0 else float("inf")

    def score(self, x: np.ndarray) -> np.ndarray:
        r = self._weigh(np.asarray(x, dtype=float)) @ self.residual_
        return (r ** 2).sum(axis=1)


def _iforest_scores(fit_x: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=100, random_state=seed).fit(fit_x)
    return -model.score_samples(x)


# ------------------------------------------------------------------------------------- thresholds / metrics
def choose_threshold(val_labels: np.ndarray, val_scores: np.ndarray, fit_scores: np.ndarray) -> float:
    """The validation score maximising F1 (ties: the higher threshold); the largest fitting score
    when the validation tail holds no alert."""
    y = np.asarray(val_labels, dtype=bool)
    s = np.nan_to_num(np.asarray(val_scores, dtype=float), nan=-np.inf)
    if not y.any():
        finite = np.asarray(fit_scores, dtype=float)
        finite = finite[np.isfinite(finite)]
        return float(finite.max()) if len(finite) else float("inf")
    best, best_t = -1.0, float("inf")
    for t in sorted(set(s[np.isfinite(s)].tolist()), reverse=True):
        f = point_prf(y, s >= t)["f1"]
        if f > best:
            best, best_t = f, t
    return best_t


def window_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(labels, dtype=int)
    s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    out = point_prf(y, s >= threshold)
    out["pr_auc"] = pr_auc(y, s)
    out["roc_auc"] = roc_auc(y, s)
    if vus_pr is not None:
        out["vus_pr"] = vus_pr(y, np.where(np.isfinite(s), s, np.min(s[np.isfinite(s)], initial=0.0)))
    out["threshold"] = float(threshold)
    return out


def _median_summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    keys = [k for k in runs[0] if k != "threshold"]
    out: dict[str, Any] = {k: float(np.median([r[k] for r in runs])) for k in keys}
    out["pr_auc_min"] = float(min(r["pr_auc"] for r in runs))
    out["pr_auc_max"] = float(max(r["pr_auc"] for r in runs))
    out["runs"] = runs
    return out


# ------------------------------------------------------------------------------------- the run
@dataclasses.dataclass
class Split:
    counts: LogCounts  # every full window, in file order
    labels: np.ndarray  # bool per window
    n_fit: int
    n_train: int
    templates: int  # mined on the training part
    vocab_size: int
    test_unmatched_lines: int


def read_bgl(data_dir: str | Path) -> list[LogRecord]:
    """BGL_2k.log from `data_dir` (the file itself, its folder, the loghub folder or their parent)."""
    root = Path(data_dir)
    for path in (root, root / "BGL_2k.log", root / "BGL" / "BGL_2k.log", root / "loghub" / "BGL" / "BGL_2k.log"):
        if path.is_file():
            report = ParseReport()
            with open(path, encoding="utf-8", newline="") as fh:
                records = list(parse_lines(fh, "bgl", report=report))
            if not records:
                raise UserError(f"{path}: no BGL line parsed ({report.summary()})")
            return records
    raise UserError(f"no BGL_2k.log under {root}")


def make_split(records: Sequence[LogRecord], window_lines: int, train_fraction: float, val_fraction: float,
               top_k: int, miner_config: MinerConfig) -> Split:
    n_windows = len(records) // window_lines
    n_train = int(round(train_fraction * n_windows))
    n_fit = int(round((1.0 - val_fraction) * n_train))
    if not (0 < n_fit < n_train < n_windows):
        raise UserError(f"{n_windows} windows of {window_lines} lines leave no room for fitting, validation "
                        f"and test parts (train_fraction {train_fraction}, val_fraction {val_fraction})")
    records = list(records[:n_windows * window_lines])
    train = records[:n_train * window_lines]
    miner = TemplateMiner(miner_config)
    miner.add_all(r.content for r in train)
    ids = [miner.match_id(r.content) for r in records]
    vocab, _ = build_vocabulary(train, miner, top_k, lines=window_lines, template_ids=ids[:len(train)])
    counts = count_frame(records, vocab, ids)
    return Split(counts, counts.alerts.copy(), n_fit, n_train, len(miner), len(vocab.templates),
                 int(sum(1 for i in ids[len(train):] if i == 0)))


def _ae_scores(x: np.ndarray, fit_rows: np.ndarray, names: list[str], changes: dict[str, Any], seed: int,
               device: str) -> np.ndarray:
    from tsad.config import DetectorConfig
    from tsad.detector import WindowDetector

    changes = dict(changes)
    x = FEATURES[changes.pop("features", DEFAULT_FEATURES)](x)
    window = int(changes.pop("window"))
    cfg = DetectorConfig().updated({"training.batch_size": 16, "training.val_fraction": 0.0,
                                    "training.patience": None, "network.dropout": 0.1,
                                    "scoring.causal_tail": 1, "network.center": False, **changes})
    cfg.training.patience = None
    if window == 1:
        return _row_ae_scores(x, fit_rows, cfg, seed, device)
    cfg.window = window
    det = WindowDetector(cfg, seed=seed, device=device).fit(x[fit_rows], channel_names=names)
    return det.raw_score(x).score


def _row_ae_scores(x: np.ndarray, fit_rows: np.ndarray, cfg: Any, seed: int, device: str) -> np.ndarray:
    """A window of one row, below WindowDetector's minimum of 4: the detector's own pieces (scaler,
    dense variant, objective, trainer) on single count vectors; score = the row's mean squared error."""
    import torch

    from core.losses import BetaSchedule
    from core.objective import ReconstructionObjective
    from core.train import Trainer
    from tsad.variants import get_variant
    from tsad.windows import Scaler

    variant = get_variant(cfg.network.kind)
    if not variant.flat_input:
        raise UserError(f"a window of 1 row needs a dense network, not {cfg.network.kind!r}")
    scaler = Scaler().fit(x[fit_rows])
    z = torch.from_numpy(scaler.transform(x))
    torch.manual_seed(seed)
    net = variant.build(cfg.network, x.shape[1], 1)
    objective = ReconstructionObjective(beta=BetaSchedule(beta=1e-3, warmup_epochs=max(1, cfg.training.epochs // 4)))
    train_cfg = dataclasses.replace(cfg.training, val_fraction=0.0, seed=seed, device=device, progress=False,
                                    description="tsad train")
    Trainer(train_cfg, objective).fit(net, z[torch.from_numpy(np.flatnonzero(fit_rows))])
    net.eval()
    with torch.no_grad():
        z = z.to(next(net.parameters()).device)
        return ((net.reconstruct(z) - z) ** 2).mean(dim=1).cpu().numpy().astype(float)


def evaluate_records(records: Sequence[LogRecord], *, window_lines: int = 20, train_fraction: float = 0.8,
                     val_fraction: float = 0.25, top_k: int = DEFAULT_TOP_K, seeds: Sequence[int] = (0, 1, 2),
                     device: str = "cpu", miner_config: MinerConfig | None = None,
                     candidates: dict[str, dict[str, Any]] | None = None,
                     exclude_alerts: bool = False) -> dict[str, Any]:
    """The protocol of the module docstring on any labelled records (the label marks alerts)."""
    t0 = time.perf_counter()
    candidates = dict(candidates or AE_CANDIDATES)
    split = make_split(records, window_lines, train_fraction, val_fraction, top_k,
                       miner_config or config_for("bgl"))
    x, y = split.counts.values, split.labels
    names = list(split.counts.columns)
    n = len(y)
    fit = np.arange(split.n_fit)
    if exclude_alerts:
        fit = fit[~y[:split.n_fit]]
    val, test = np.arange(split.n_fit, split.n_train), np.arange(split.n_train, n)
    fit_mask = np.zeros(n, dtype=bool)
    fit_mask[fit] = True

    def judged(scores: np.ndarray) -> tuple[dict[str, float], float]:
        th = choose_threshold(y[val], scores[val], scores[fit])
        return window_metrics(y[test], scores[test], th), pr_auc(y[val], scores[val])

    detectors: dict[str, Any] = {}
    # autoencoder: every candidate and seed; the candidate is picked on validation PR-AUC
    grid: dict[str, Any] = {}
    for name, changes in candidates.items():
        runs, vals = [], []
        for seed in seeds:
            scores = _ae_scores(x, fit_mask, names, changes, int(seed), device)
            metrics, val_auc = judged(scores)
            metrics["seed"], metrics["val_pr_auc"] = int(seed), val_auc
            runs.append(metrics)
            vals.append(val_auc)
        grid[name] = {"val_pr_auc_median": _finite_median(vals),
                      "setting": _plain(changes),
                      "test": _median_summary(runs)}
    chosen = _best(grid)
    detectors["autoencoder"] = {**grid[chosen]["test"], "setting": chosen}

    # baselines: loglizer's own input (raw counts) and, by the autoencoder's rule, the transform that
    # wins on the validation tail (ties: counts, the first of FEATURES)
    base_grid: dict[str, dict[str, Any]] = {"pca": {}, "isolation_forest": {}}
    for feature, fn in FEATURES.items():
        fx = fn(x)
        pca = LogPCA().fit(fx[fit])
        pca_scores = pca.score(fx)
        metrics, val_auc = judged(pca_scores)
        base_grid["pca"][feature] = {"val_pr_auc_median": val_auc, "test": {**metrics, "components": pca.k_},
                                     "q_statistic": {**window_metrics(y[test], pca_scores[test], pca.q_threshold_),
                                                     "components": pca.k_}}
        runs, vals = [], []
        for seed in seeds:
            metrics, val_auc = judged(_iforest_scores(fx[fit], fx, int(seed)))
            metrics["seed"], metrics["val_pr_auc"] = int(seed), val_auc
            runs.append(metrics)
            vals.append(val_auc)
        base_grid["isolation_forest"][feature] = {"val_pr_auc_median": _finite_median(vals),
                                                  "test": _median_summary(runs)}
    detectors["pca"] = {**base_grid["pca"]["counts"]["test"], "features": "counts"}
    detectors["pca_q_statistic"] = {**base_grid["pca"]["counts"].pop("q_statistic"), "features": "counts"}
    detectors["isolation_forest"] = {**base_grid["isolation_forest"]["counts"]["test"], "features": "counts"}
    base_chosen = {k: _best(v) for k, v in base_grid.items()}
    for v in base_grid["pca"].values():
        v.pop("q_statistic", None)
    baselines_val = {k: {**base_grid[k][f]["test"], "features": f} for k, f in base_chosen.items()}

    ae = detectors["autoencoder"]["pr_auc"]
    best_baseline = max(d["pr_auc"] for d in (detectors["pca"], detectors["isolation_forest"],
                                              *baselines_val.values()))
    return {
        "protocol": "loglizer: fixed windows of lines, chronological split, unsupervised fit, window labels",
        "settings": {"window_lines": window_lines, "train_fraction": train_fraction, "val_fraction": val_fraction,
                     "top_k": top_k, "seeds": [int(s) for s in seeds], "device": device,
                     "exclude_alerts": exclude_alerts, "features": len(names),
                     "threshold_rule": "best F1 on the validation tail (last val_fraction of the training part)",
                     "ae_selection": "best median validation PR-AUC over the seeds among ae_candidates; "
                                     "ties: the earlier candidate",
                     "baseline_features": f"loglizer's counts, and the best validation PR-AUC among "
                                          f"{list(FEATURES)} (ties: counts)",
                     "ae_candidates": {k: _plain(v) for k, v in candidates.items()}},
        "data": {"lines": len(records), "windows": n, "fit_windows": int(len(fit)),
                 "val_windows": int(len(val)), "test_windows": int(len(test)),
                 "anomalous_fit": int(y[:split.n_fit].sum()), "anomalous_val": int(y[val].sum()),
                 "anomalous_test": int(y[test].sum()), "templates_mined": split.templates,
                 "vocabulary": split.vocab_size, "test_lines_unmatched": split.test_unmatched_lines},
        "ae_grid": grid,
        "ae_chosen": chosen,
        "detectors": detectors,
        "vus_pr_available": vus_pr is not None,
        "baseline_grid": base_grid,
        "baselines_val_features": baselines_val,
        "bar_met": bool(ae > best_baseline),
        "bar_margin": float(ae - best_baseline),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def evaluate_bgl(data_dir: str | Path, window_lines: int = 20, train_fraction: float = 0.8,
                 seeds: Sequence[int] = (0, 1, 2), device: str = "cpu", **options: Any) -> dict[str, Any]:
    """The module docstring's protocol on BGL_2k.log (found under `data_dir`); `options` go to
    `evaluate_records` (val_fraction, top_k, candidates, exclude_alerts)."""
    return evaluate_records(read_bgl(data_dir), window_lines=window_lines, train_fraction=train_fraction,
                            seeds=seeds, device=device, **options)


def _finite_median(values: Sequence[float]) -> float:
    """Median over seeds, NaN (no alert in the validation tail) left out."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def _best(grid: dict[str, dict[str, Any]]) -> str:
    """The entry with the best `val_pr_auc_median` (NaN counts as worst); ties: the earlier entry."""
    return max(grid, key=lambda k: (np.nan_to_num(grid[k]["val_pr_auc_median"], nan=-1.0), -list(grid).index(k)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
