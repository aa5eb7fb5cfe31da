"""Fault tests: `kill -9` at random points of `tsad score` and `tsad train` over an
existing output. Afterwards the output is the old one or the new one, whole, never a mix or a
fragment; the next run succeeds and leaves no temporaries behind."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.artifact import read_config

ROOT = Path(__file__).resolve().parents[1]


def _pythonpath(root: Path | None = None) -> str:
    """The project first, then whatever PYTHONPATH already holds (packages installed beside site-packages)."""
    return os.pathsep.join(filter(None, [str(root or ROOT), os.environ.get("PYTHONPATH")]))
TRIALS = 3


def _ae(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli import main; main()", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": _pythonpath(), "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str]) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - t0


def _killed(cmd: list[str], after: float) -> int:
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _series(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="1min"),
                  "v0": np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(n)}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("faults")
    _series(d / "train.csv", 400, 0)
    _run(_ae("tsad", "train", "--data", str(d / "train.csv"), "--out", str(d / "det"), "--window", "16",
             "--epochs", "2", "--device", "cpu", "--quiet"))
    _series(d / "old.csv", 2_000, 1)
    _series(d / "new.csv", 30_000, 2)
    return d


def test_kill_9_during_tsad_score_keeps_the_old_or_the_new_output(work: Path, tmp_path: Path) -> None:
    def score(data: Path, out: Path) -> list[str]:
        return _ae("tsad", "score", "--model", str(work / "det"), "--input", str(data), "--out", str(out),
                   "--chunk-rows", "2000", "--device", "cpu", "--quiet")

    old_ref, new_ref = tmp_path / "old_ref.parquet", tmp_path / "new_ref.parquet"
    _run(score(work / "old.csv", old_ref))
    full = _run(score(work / "new.csv", new_ref))
    old, new = pd.read_parquet(old_ref), pd.read_parquet(new_ref)
    target_dir = tmp_path / "out"
    target_dir.mkdir()
    target = target_dir / "scores.parquet"
    rng = random.Random(0)
    for _ in range(TRIALS):
        shutil.copy(old_ref, target)
        _killed(score(work / "new.csv", target), rng.uniform(0.3, 1.0) * full)
        got = pd.read_parquet(target)  # whole: a fragment would not read
        same_old, same_new = got.equals(old), got.equals(new)
        assert same_old or same_new
    _run(score(work / "new.csv", target))
    assert pd.read_parquet(target).equals(new)
    assert _leftovers(target_dir) == []


def test_kill_9_during_tsad_train_keeps_the_old_or_the_new_model(work: Path, tmp_path: Path) -> None:
    from tsad.detector import WindowDetector

    def train(seed: int, out: Path) -> list[str]:
        return _ae("tsad", "train", "--data", str(work / "old.csv"), "--out", str(out), "--window", "16",
                   "--epochs", "2", "--seed", str(seed), "--device", "cpu", "--quiet")

    def weights(model: Path) -> str:  # the same seed gives the same weights; config.json holds times too
        return read_config(model)["weights_sha256"]

    old_ref, new_ref = tmp_path / "old_ref", tmp_path / "new_ref"
    _run(train(1, old_ref))
    full = _run(train(2, new_ref))
    hashes = {weights(old_ref): "old", weights(new_ref): "new"}
    assert len(hashes) == 2
    models = tmp_path / "models"
    models.mkdir()
    target = models / "daily"
    rng = random.Random(1)
    for _ in range(TRIALS):
        if target.is_symlink() or target.exists():
            shutil.rmtree(target.resolve())
            target.unlink() if target.is_symlink() else None
        shutil.copytree(old_ref.resolve(), target)
        _killed(train(2, target), rng.uniform(0.3, 1.0) * full)
        WindowDetector.load(target, device="cpu")  # loads: whole and consistent
        assert weights(target) in hashes
    _run(train(2, target))
    assert hashes[weights(target)] == "new"
    assert _leftovers(models) == [p for p in _leftovers(models) if p.endswith(".v")]  # only the linked version
    assert len(_leftovers(models)) == 1 and target.resolve().name == _leftovers(models)[0]
