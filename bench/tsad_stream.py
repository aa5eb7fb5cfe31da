"""Goal: `ae tsad monitor` at >= 5,000 records/s with p99 latency <= 5 ms (univariate, window 288),
beside batch `detect` throughput in the same run; the monitor (micro-batch 32) on one thread and on
torch's default thread count, on a quiet machine and on one whose cores are kept busy by other processes
(the default collapses there, hence `--threads` defaulting to 1 for the monitor); and batch scoring
(`ae tsad score`) rows/s and peak memory for a 1x and a 10x input (bounded memory: chunks, not whole files).
Usage: python bench/tsad_stream.py"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import data_dir, table

ROOT = Path(__file__).resolve().parents[1]
SERIES = "realKnownCause/machine_temperature_system_failure.csv"


def ae(*args: str) -> float:
    """Run an `ae` command in a fresh process; returns its peak RSS in MB."""
    code = ("import resource,sys; from cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, file=sys.stderr); raise\n")
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode not in (0, 3):
        raise SystemExit(p.stderr)
    rss = [line for line in p.stderr.splitlines() if line.startswith("RSS")]
    return float(rss[-1].split()[1]) if rss else float("nan")


@contextlib.contextmanager
def cpu_load(procs: int, max_seconds: float = 300.0):  # noqa: ANN201 - a context manager
    """Keep `procs` cores busy with spinning python processes (each stops itself after max_seconds, and
    all are killed on the way out whatever happens)."""
    code = f"import time\nend = time.time() + {max_seconds}\nwhile time.time() < end:\n    pass\n"
    started: list[subprocess.Popen] = []
    try:
        for _ in range(procs):
            started.append(subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)  # let them reach the busy loop
        yield
    finally:
        for p in started:
            p.kill()
        for p in started:
            p.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--only-compare", action="store_true",
                    help="only the default against the former default (plain windows, fixed threshold)")
    ap.add_argument("--load-procs", type=int, default=os.cpu_count() or 2,
                    help="busy processes for the loaded rows (default: one per core)")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()  # torch's own choice, before anything sets it
    src = data_dir() / "nab" / "data" / SERIES
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        frame = pd.read_csv(src)
        # the published file has a few out-of-order timestamps; put the values on a regular 5-min grid
        frame["timestamp"] = pd.date_range("2013-12-02", periods=len(frame), freq="5min").strftime("%Y-%m-%d %H:%M:%S")
        src = tmp / "series.csv"
        frame.to_csv(src, index=False)
        frame.iloc[: len(frame) // 4].to_csv(tmp / "train.csv", index=False)
        ae("tsad", "train", "--data", str(tmp / "train.csv"), "--out", str(tmp / "m"), "--window", "288",
           "--epochs", str(args.epochs), "--device", "cpu", "--quiet")
        ae("tsad", "train", "--data", str(tmp / "train.csv"), "--out", str(tmp / "former"), "--window", "288",
           "--epochs", str(args.epochs), "--device", "cpu", "--quiet", "--no-center", "--alerting", "threshold")
        n = len(frame)
        t0 = time.perf_counter()
        ae("tsad", "detect", "--model", str(tmp / "m"), "--data", str(src), "--out", str(tmp / "d.csv"),
           "--device", "cpu")
        detect_s = time.perf_counter() - t0

        sys.path.insert(0, str(ROOT))
        from tsad.monitor import Monitor

        def monitor_row(label: str, batch: int, threads: int, model: str = "m") -> list:
            mon = Monitor(tmp / model, str(src), alerts=str(tmp / "a.jsonl"), batch=batch, device="cpu",
                          threads=threads)
            stats = mon.run()
            lat = np.array(stats.latencies_ms)
            return [label, threads, stats.records, stats.records / stats.seconds,
                    float(np.percentile(lat, 50)), float(np.percentile(lat, 99))]

        # today's default (centred windows, spot alerting) beside the former default, interleaved runs
        runs: dict[str, list[list]] = {"default (centred windows, spot)": [],
                                       "former default (plain windows, fixed threshold)": []}
        for _ in range(3):
            for label, model in zip(runs, ("m", "former")):
                runs[label].append(monitor_row(label, 32, 1, model))
        table("monitor, micro-batch 32, one thread: the default beside the former default (3 interleaved runs "
              "each, median and range)", ["model", "records/s", "latency p50 ms", "latency p99 ms"],
              [[label, *(f"{np.median(v):,.2f} ({min(v):,.2f}–{max(v):,.2f})"
                         for v in ([r[k] for r in rs] for k in (3, 4, 5)))] for label, rs in runs.items()])
        if args.only_compare:
            return

        rows = [["detect (batch, whole file)", default_threads, n, n / detect_s, "", ""]]
        for batch in (1, 16, 32, 64, 256):
            rows.append(monitor_row(f"monitor, micro-batch {batch}", batch, 1))
        rows.append(monitor_row("monitor, micro-batch 32, torch default threads", 32, default_threads))
        with cpu_load(args.load_procs):
            rows.append(monitor_row(f"monitor, micro-batch 32, loaded ({args.load_procs} busy procs)", 32, 1))
            rows.append(monitor_row(f"monitor, micro-batch 32, torch default threads, loaded "
                                    f"({args.load_procs} busy procs)", 32, default_threads))
        table(f"Stream vs batch on NAB {SERIES} ({n:,} records, window 288, {os.cpu_count()} CPU cores)",
              ["mode", "torch threads", "records", "records/s", "latency p50 ms", "latency p99 ms"], rows)

        big = pd.concat([frame] * 10, ignore_index=True)
        big["timestamp"] = pd.date_range("2020-01-01", periods=len(big), freq="5min").strftime("%Y-%m-%d %H:%M:%S")
        small = big.iloc[:n]
        small.to_csv(tmp / "x1.csv", index=False)
        big.to_csv(tmp / "x10.csv", index=False)
        brows = []
        for name, path, rows_n in (("1x", tmp / "x1.csv", n), ("10x", tmp / "x10.csv", len(big))):
            t0 = time.perf_counter()
            rss = ae("tsad", "score", "--model", str(tmp / "m"), "--input", str(path), "--out",
                     str(tmp / f"{name}.parquet"), "--chunk-rows", "20000", "--device", "cpu", "--quiet")
            s = time.perf_counter() - t0
            brows.append([name, rows_n, s, rows_n / s, rss])
        table("Batch scoring memory (ae tsad score, chunks of 20,000 rows)",
              ["input", "rows", "seconds", "rows/s", "peak RSS MB"], brows)


if __name__ == "__main__":
    main()
