"""The monitor as operators run it: the README's pipe verbatim, alerts on disk while it runs,
SIGTERM on an idle pipe, replays after a restart, streams without a header, a status file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import UserError
from tsad.ingest import Layout
from tsad.stream import StreamSplitter

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _pythonpath(root: Path | None = None) -> str:
    """The project first, then whatever PYTHONPATH already holds (packages installed beside site-packages)."""
    return os.pathsep.join(filter(None, [str(root or ROOT), os.environ.get("PYTHONPATH")]))
START = pd.Timestamp("2024-01-01")


def _rows(first: int, n: int, spike: tuple[int, int] | None = None) -> str:
    """CSV data lines (no header) of the training signal, rows first … first+n−1, optionally spiked."""
    t = np.arange(first, first + n)
    v = np.sin(2 * np.pi * t / 25)
    if spike is not None:
        v[(t >= spike[0]) & (t < spike[1])] += 6.0
    stamps = (START + pd.to_timedelta(t * 5, unit="min")).strftime("%Y-%m-%d %H:%M:%S")
    return "".join(f"{s},{x:.6f}\n" for s, x in zip(stamps, v))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ops")
    (d / "train.csv").write_text("timestamp,v0\n" + _rows(0, 400))
    out = d / "daily"
    result = runner.invoke(app, ["tsad", "train", "--data", str(d / "train.csv"), "--out", str(out), "--window", "16",
                                 "--epochs", "3", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # where `ae` is installed with the project
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": _pythonpath()}


def _wait_for(check, seconds: float = 30.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc").is_dir() or shutil.which("tail") is None, reason="needs Linux /proc and tail")
def test_the_readme_pipe_runs_verbatim_and_alerts_arrive_while_it_runs(model: Path, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("tail -F metrics.csv | ae tsad monitor"))
    (tmp_path / "models").mkdir()
    shutil.copytree(model.resolve(), tmp_path / "models" / "daily")
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("timestamp,v0\n" + _rows(0, 200))  # tail -F prints the last 10 lines: no header
    shell = subprocess.Popen(["bash", "-c", line], cwd=tmp_path, env=_env(), start_new_session=True,
                             stderr=subprocess.PIPE)
    try:
        alerts = tmp_path / "alerts.jsonl"
        assert _wait_for(alerts.exists), "the monitor did not start"
        with metrics.open("a") as fh:
            fh.write(_rows(200, 60, spike=(220, 226)))
        assert _wait_for(lambda: alerts.read_text().count("\n") >= 1), "no alert reached the file while running"
        alert = json.loads(alerts.read_text().splitlines()[0])
        assert alert["start"].startswith(str((START + pd.Timedelta(minutes=5 * 220)).date()))
        monitor = next(p for p in _children(shell.pid) if "tsad monitor" in _cmdline(p))
        t0 = time.monotonic()
        os.kill(monitor, signal.SIGTERM)
        assert _wait_for(lambda: not Path(f"/proc/{monitor}").exists() or "zombie" in
                         Path(f"/proc/{monitor}/status").read_text(), 5)
        assert time.monotonic() - t0 < 1.5
    finally:
        os.killpg(shell.pid, signal.SIGTERM)  # tail -F would otherwise wait for its next write
        shell.wait(10)
    stderr = shell.stderr.read().decode()
    assert "Traceback" not in stderr and "monitor: 70 records, 0 rejected" in stderr, stderr
    state = json.loads((tmp_path / "monitor.state").read_text())
    assert state["records"] == 70


def test_sigterm_on_an_idle_pipe_saves_state_and_exits_0_within_a_second(model: Path, tmp_path: Path) -> None:
    state, alerts = tmp_path / "mon.state", tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", "from cli import main; main()", "tsad", "monitor", "--model",
                             str(model), "--alerts", str(alerts), "--state", str(state)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        proc.stdin.write(("timestamp,v0\n" + _rows(0, 40)).encode())
        proc.stdin.flush()  # ... and the pipe stays open, idle
        assert _wait_for(alerts.exists)
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    assert code == 0, proc.stderr.read().decode()
    assert elapsed < 1.0, elapsed
    assert json.loads(state.read_text())["records"] == 40


def _monitor(model: Path, text: str, state: Path, alerts: Path, *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--alerts", str(alerts),
                               "--state", str(state), *extra], input=text)


def test_a_replayed_stream_skips_what_the_checkpoint_covers(model: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    whole = "timestamp,v0\n" + _rows(0, 300, spike=(250, 256))
    once = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--alerts", str(tmp_path / "once.jsonl")],
                         input=whole)
    assert once.exit_code == 0, once.output
    state, alerts = tmp_path / "s.state", tmp_path / "a.jsonl"
    first = _monitor(model, "timestamp,v0\n" + _rows(0, 180), state, alerts)
    assert first.exit_code == 0, first.output
    replay = _monitor(model, whole, state, alerts)  # the whole stream again, from its start
    assert replay.exit_code == 0, replay.output
    summary = flat(replay.output)
    assert "180 record(s) at or before the checkpoint skipped (already processed)" in summary
    assert "0 rejected" in summary and "line " not in summary
    assert alerts.read_text() == (tmp_path / "once.jsonl").read_text() != ""


def test_a_stream_may_start_without_its_header() -> None:
    layout = Layout(["a", "b"], "ts")
    split = StreamSplitter(layout, "csv", "stdin")
    assert split.split("2024-01-01 00:00:00,1.5,2.5", 1) == ["2024-01-01 00:00:00", "1.5", "2.5"]
    assert split.split("b,extra,ts,a", 2) is None  # a header arriving later (a rotated file) is adopted
    assert split.split("3,x,2024-01-01 00:05:00,4", 3) == ["2024-01-01 00:05:00", "4", "3"]
    assert split.split("ts,a", 4).reason.startswith("header-like line lacks column(s) b")
    ordered = StreamSplitter(layout, "csv", "stdin", columns=["a", "b", "ts"])
    assert ordered.split("1;2;2024-01-01", 1) == ["2024-01-01", "1", "2"]
    with pytest.raises(UserError, match="no column 'b'"):
        StreamSplitter(layout, "csv", "stdin").split("ts,a", 1)  # a wrong first header stays an error
    with pytest.raises(UserError, match="no column 'ts'"):
        StreamSplitter(layout, "csv", "stdin").split("time,value,other", 1)  # no number: a header, checked
    with pytest.raises(UserError, match="--columns lacks"):
        StreamSplitter(layout, "csv", "stdin", columns=["a", "ts"])


def test_status_file_reports_progress(model: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "status.json"
    result = _monitor(model, _rows(0, 120, spike=(60, 66)), tmp_path / "s.state", tmp_path / "a.jsonl",
                      "--metrics", str(metrics))
    assert result.exit_code == 0, result.output
    status = json.loads(metrics.read_text())
    assert status["records"] == 120 and status["rejected"] == 0 and status["alerts"] == 1
    assert status["last_timestamp"].startswith("2024-01-01T09:55") and status["records_per_second"] > 0
    assert status["lag_seconds"] > 0


def test_nothing_the_monitor_keeps_grows_with_the_records(model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The soak bench found per-record latencies kept forever (38 MB per million records)."""
    from tsad import monitor as mon

    monkeypatch.setattr(mon, "LATENCIES_KEPT", 50)
    data = tmp_path / "d.csv"
    data.write_text("timestamp,v0\n" + _rows(0, 400, spike=(200, 206)))
    m = mon.Monitor(model, str(data), alerts=str(tmp_path / "a.jsonl"), state_path=tmp_path / "s.state",
                    checkpoint_every=100)
    stats = m.run()
    assert stats.records == 400 and len(stats.latencies_ms) == 50
    state = json.loads((tmp_path / "s.state").read_text())
    assert len(state["buffer"]) <= m.detector.context_rows and len(state["rejected_lines"]) <= mon.FIRST_REJECTED
    # every list the alerting keeps is bounded (rolling history, or spot's peaks: at most max_peaks)
    kept = [v for v in state["alerting"].values() if isinstance(v, list)]
    assert kept and all(len(v) <= m.detector.context_rows + 1000 for v in kept)


@pytest.mark.skipif(not Path(os.devnull).exists(), reason="needs a null device")
def test_alerts_to_the_null_device_resume_without_cutting_it(model: Path, tmp_path: Path) -> None:
    """A resumed monitor cuts its alerts file back to the checkpoint; the null device (or a FIFO) is
    not a file to cut, so it is written to as it is."""
    state = tmp_path / "s.state"
    first = _monitor(model, "timestamp,v0\n" + _rows(0, 120), state, Path(os.devnull))
    assert first.exit_code == 0, first.output
    resumed = _monitor(model, "timestamp,v0\n" + _rows(0, 240, spike=(200, 206)), state, Path(os.devnull))
    assert resumed.exit_code == 0, resumed.output
    assert "240 records" in resumed.output
