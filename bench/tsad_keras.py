"""Bar: the Keras example reproduced: trained on NAB art_daily_small_noise (window 288, Conv1D 32/16,
threshold = largest training error), the detector flags the jump in art_daily_jumpsup and nothing
else. The rolling z-score baseline runs on the same data with its own max-of-train threshold.
Usage: python bench/tsad_keras.py"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import data_dir, table

from tsad.baselines import RollingZScore
from tsad.config import DetectorConfig
from tsad.datasets import load_nab
from tsad.detector import WindowDetector
from tsad.metrics import segments


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="a detector setting on top of the defaults, e.g. --set network.center=false")
    args = ap.parse_args()
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    train = load_nab(data_dir(), "artificialNoAnomaly/art_daily_small_noise.csv")
    test = load_nab(data_dir(), "artificialWithAnomaly/art_daily_jumpsup.csv")
    config = DetectorConfig(window=288).updated({"training.epochs": args.epochs, **extra})
    det = WindowDetector(config, device=args.device).fit(train)
    result = det.score(test)
    base = RollingZScore(window=288)
    z_train = base.score(train.values)
    z_flags = np.nan_to_num(base.score(test.values), nan=0) > np.nanmax(z_train)
    ts = test.timestamps
    (lo, hi), = test.windows
    rows = []
    for name, flags in (("conv AE (ours)", result.is_anomaly), ("rolling z-score", z_flags)):
        segs = segments(flags)
        inside = [s for s in segs if s[1] >= lo and s[0] <= hi]
        rows.append([name, len(segs), len(inside), len(segs) - len(inside),
                     "; ".join(f"{ts[a]:%m-%d %H:%M}..{ts[b]:%m-%d %H:%M}" for a, b in segs[:4])])
    table(f"Keras reproduction on art_daily_jumpsup (labelled window {ts[lo]:%m-%d %H:%M}..{ts[hi]:%m-%d %H:%M})",
          ["detector", "flagged ranges", "overlapping the label", "false ranges", "ranges"], rows)
    print(f"scoring throughput: {result.points_per_second:,.0f} points/s (batch, window 288)")


if __name__ == "__main__":
    main()
