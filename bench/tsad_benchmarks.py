"""Bars: NAB standard > 52 and above our windowed gaussian (all three profiles); SKAB F1 > 0.78 with
FAR/MAR; MSL PR-AUC and best point-wise F1 above PCA and IsolationForest; throughput printed.
Runs `ae tsad evaluate` for each benchmark so the numbers are the CLI's.
Training is random, so `--seeds 0,1,2` runs each benchmark once per seed and adds a table of the
median and spread (max - min) of every figure.
Usage: python bench/tsad_benchmarks.py [--only nab,skab,msl] [--seeds 0,1,2] [--device cpu]"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import data_dir, median, table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="nab,skab,msl")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    data_dir()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as d:
        for bench in args.only.split(","):
            runs: list[dict[str, list]] = []
            for seed in seeds:
                out = Path(d) / f"{bench}-{seed}.json"
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", "from cli import main; main()", "tsad", "evaluate",
                                "--benchmark", bench, "--json", str(out), "--quiet", "--device", args.device,
                                "--seed", str(seed)], cwd=ROOT, check=True)
                doc = json.loads(out.read_text())
                keys = [k for k in doc["metrics"] if k != "points_per_second"]
                rows = [[f"{doc['model']} AE (ours)", *[doc["metrics"][k] for k in keys]]]
                rows += [[f"{doc['model']} AE, {n.replace('_', ' ')} (ablation)", *[m.get(k, "") for k in keys]]
                         for n, m in doc.get("ablations", {}).items()]
                rows += [[n, *[m.get(k, "") for k in keys]] for n, m in doc["baselines"].items()]
                table(f"{bench.upper()} seed {seed} ({time.perf_counter() - t0:.0f} s wall, scoring "
                      f"{doc['metrics']['points_per_second']:,} points/s)", ["detector", *keys], rows)
                runs.append({r[0]: r[1:] for r in rows})
            if len(seeds) > 1:
                summary = []
                for name in runs[0]:
                    per_seed = [run[name] for run in runs]
                    cells = []
                    for j in range(len(keys)):
                        vals = [float(v[j]) for v in per_seed if v[j] != ""]
                        cells.append(f"{median(vals):.4g} ({max(vals) - min(vals):.3g})" if vals else "")
                    summary.append([name, *cells])
                table(f"{bench.upper()}: median of seeds {args.seeds} (spread max - min)", ["detector", *keys],
                      summary)


if __name__ == "__main__":
    main()
