"""The detector's part of `ae demo`: the Keras example on NAB — train on art_daily_small_noise,
detect on art_daily_jumpsup — with the flagged ranges beside the labelled window."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.jobs.report import Section
from tsad.config import DetectorConfig
from tsad.datasets import load_nab
from tsad.detector import WindowDetector
from tsad.metrics import segments
from tsad.plots import plot_scores

TRAIN = "artificialNoAnomaly/art_daily_small_noise.csv"
TEST = "artificialWithAnomaly/art_daily_jumpsup.csv"


def run(data_dir: Path, out: Path, device: str, seed: int, quick: bool, progress: bool) -> Section:
    train, test = load_nab(data_dir, TRAIN), load_nab(data_dir, TEST)
    config = DetectorConfig(window=288).updated({"training.epochs": 5 if quick else 50})
    det = WindowDetector(config, seed=seed, device=device, progress=progress)
    det.fit(train)
    result = det.score(test)
    flagged = segments(result.is_anomaly)
    ts = test.timestamps
    rows = [["flagged by the detector", str(ts[lo]), str(ts[hi]), hi - lo + 1] for lo, hi in flagged]
    rows += [["labelled anomaly window (NAB)", str(ts[lo]), str(ts[hi]), hi - lo + 1] for lo, hi in test.windows]
    section = Section("Anomaly detection (NAB: the Keras autoencoder example)")
    section.text(f"Trained on {TRAIN} ({len(train)} rows, window 288, threshold = largest training error "
                 f"{det.threshold_.threshold_:.4g}); scored {TEST} causally at {result.points_per_second:,.0f} "
                 "points/s.")
    section.table(pd.DataFrame(rows, columns=["range", "start", "end", "rows"]))
    section.image(plot_scores(test, result, det.threshold_.threshold_, out / "tsad_scores.png"), "anomaly scores")
    return section
