"""Thread count: core.device.set_threads precedence and validation, and `--threads` on the tsad commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core.device import set_threads
from core.errors import UserError

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202 - a fixture generator
    """Each test starts without OMP_NUM_THREADS and leaves torch's thread count as it found it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _series(path: Path, n: int = 120) -> Path:
    t = np.arange(n)
    v = np.sin(2 * np.pi * t / 20) + 0.05 * np.random.default_rng(0).standard_normal(n)
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="5min"), "v0": v}).to_csv(path,
                                                                                                    index=False)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("threads")
    before = torch.get_num_threads()
    result = runner.invoke(app, ["tsad", "train", "--data", str(_series(d / "f.csv")), "--window", "8", "--epochs",
                                 "1", "--quiet", "--device", "cpu", "--out", str(d / "m")])
    torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return d / "m"


def test_explicit_count_wins_over_env_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads(1, default=3) == 1
    assert torch.get_num_threads() == 1


def test_env_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads(None, default=1) == 2
    assert torch.get_num_threads() == 2


def test_default_used_without_explicit_or_env() -> None:
    assert set_threads(None, default=1) == 1
    assert set_threads(None, default=3) == 3


def test_no_default_leaves_torch_alone() -> None:
    torch.set_num_threads(3)
    assert set_threads(None) == 3
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("env", ["", "zero", "0", "-4"])
def test_unusable_env_is_ignored(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert set_threads(None, default=1) == 1


def test_env_list_takes_first_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")
    assert set_threads(None) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_counts_rejected(bad: object) -> None:
    before = torch.get_num_threads()
    with pytest.raises(UserError, match="at least 1"):
        set_threads(bad)  # type: ignore[arg-type]
    assert torch.get_num_threads() == before


def test_bad_default_rejected() -> None:
    with pytest.raises(UserError):
        set_threads(None, default=0)


def test_monitor_runs_on_one_thread_by_default(model: Path, tmp_path: Path) -> None:
    from tsad.monitor import Monitor

    torch.set_num_threads(2)
    mon = Monitor(model, str(_series(tmp_path / "s.csv", 40)), alerts=str(tmp_path / "a.jsonl"), device="cpu")
    assert torch.get_num_threads() == 1 and mon.threads == 1
    assert mon.run().records == 40
    Monitor(model, str(tmp_path / "s.csv"), alerts=str(tmp_path / "a.jsonl"), device="cpu", threads=2)
    assert torch.get_num_threads() == 2


def _threads_after(args: list[str]) -> int:
    """Run a command that must succeed; torch's thread count it left behind."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return torch.get_num_threads()


def test_monitor_cli_threads(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = str(_series(tmp_path / "s.csv", 40))
    args = ["tsad", "monitor", "--model", str(model), "--input", data, "--alerts", str(tmp_path / "a.jsonl")]
    torch.set_num_threads(2)
    assert _threads_after(args) == 1
    assert _threads_after([*args, "--threads", "2"]) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _threads_after(args) == 3


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_monitor_cli_rejects_bad_threads(model: Path, tmp_path: Path, value: str) -> None:
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--input", str(tmp_path / "none.csv"),
                                 "--threads", value])
    assert result.exit_code == 2
    assert "--threads" in result.output and "Traceback" not in result.output


def test_detect_and_score_keep_torch_default_unless_told(model: Path, tmp_path: Path) -> None:
    data = str(_series(tmp_path / "s.csv", 40))
    detect = ["tsad", "detect", "--model", str(model), "--data", data, "--out", str(tmp_path / "d.csv"),
              "--device", "cpu"]
    score = ["tsad", "score", "--model", str(model), "--input", data, "--out", str(tmp_path / "s.parquet"),
             "--device", "cpu", "--quiet"]
    for args in (detect, score):
        torch.set_num_threads(2)
        assert _threads_after(args) == 2
        assert _threads_after([*args, "--threads", "1"]) == 1
        assert runner.invoke(app, [*args, "--threads", "0"]).exit_code == 2
