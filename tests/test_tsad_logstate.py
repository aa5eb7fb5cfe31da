"""`ae tsad monitor --format log --state`: a monitor stopped and resumed (over the rest of a grown
file, a replay of the whole stream, or a continuation on another pipe) writes exactly the alerts of
one run over the whole log; a state from another model is refused in one line."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
START = datetime(2024, 12, 31, 22, 0)  # the test log crosses New Year: the syslog year machine is resumed too
USERS = ["fred", "alice", "bob", "deploy"]


def _ip(rng: random.Random) -> str:
    return f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ssh_log(minutes: int, start: datetime, seed: int, burst: int | None = None) -> list[str]:
    """A few logins a minute; at minute `burst`, ~150 failed logins from one address."""
    rng = random.Random(seed)
    out = []
    for m in range(minutes):
        events = []
        for _ in range(rng.randint(2, 4)):
            user, ip, pid, port = rng.choice(USERS), _ip(rng), rng.randint(1000, 30000), rng.randint(1024, 65000)
            events += [(pid, f"Accepted password for {user} from {ip} port {port} ssh2"),
                       (pid, f"pam_unix(sshd:session): session opened for user {user} by (uid=0)"),
                       (pid, f"pam_unix(sshd:session): session closed for user {user}")]
        if m == burst:
            attacker = _ip(rng)
            for _ in range(50):
                pid, port = rng.randint(1000, 30000), rng.randint(1024, 65000)
                events += [(pid, f"Invalid user admin from {attacker}"),
                           (pid, f"Failed password for invalid user admin from {attacker} port {port} ssh2"),
                           (pid, f"Connection closed by {attacker} [preauth]")]
        seconds = sorted(int(rng.uniform(0, 20)) for _ in events)  # few distinct seconds: many lines share one
        for s, (pid, msg) in zip(seconds, events):
            t = start + timedelta(minutes=m, seconds=s)
            out.append(f"{t:%b} {t.day:2d} {t:%H:%M:%S} LabSZ sshd[{pid}]: {msg}")
    return out


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("logstate")
    (d / "train.log").write_text("\n".join(ssh_log(120, START - timedelta(hours=3), seed=0)) + "\n")
    test = ssh_log(60, START + timedelta(minutes=90), seed=1, burst=30)  # Jan 1: after the year rolled over
    test.insert(7, "this line is not syslog")
    test.insert(200, f"{test[199][:15]} LabSZ sshd[4242]: Server listening on 0.0.0.0 port 22.")
    (d / "test.log").write_text("\n".join(test) + "\n")
    for name, how in (("bucket", ["--bucket", "1min"]), ("lines", ["--lines", "10"]),
                      ("spot", ["--bucket", "1min", "--alerting", "spot"])):  # an alerting state that moves
        result = runner.invoke(app, ["tsad", "train", "--format", "log", "--log-format", "openssh", *how,
                                     "--epochs", "15", "--data", str(d / "train.log"), "--out", str(d / name),
                                     "--device", "cpu", "--quiet"])
        assert result.exit_code == 0, result.output
    return {"dir": d, "test": d / "test.log", "bucket": d / "bucket", "lines": d / "lines", "spot": d / "spot"}


def monitor(model: Path, alerts: Path, *args: str, stdin: str | None = None) -> str:
    """One monitor run; its score lines go beside the alerts (`<alerts>.scores`)."""
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--format", "log", "--alerts", str(alerts),
                                 "--emit-scores", f"{alerts}.scores", "--device", "cpu", *args], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def alerts_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def scores_of(alerts: Path) -> list[dict]:
    return alerts_of(Path(f"{alerts}.scores"))


def split_point(lines: list[str]) -> int:
    """Inside the burst minute, between two lines of the same second: the worst place to stop."""
    burst = [k for k, line in enumerate(lines) if "Invalid user admin" in line]
    k = burst[len(burst) // 2]
    while lines[k][:15] != lines[k - 1][:15]:
        k += 1
    return k


@pytest.mark.parametrize("kind", ["bucket", "lines", "spot"])
def test_resumed_monitor_writes_the_alerts_of_one_run(logs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    model, text = logs[kind], logs["test"].read_text()
    lines = text.splitlines(keepends=True)
    k = split_point(lines)
    whole = tmp_path / "whole.jsonl"
    monitor(model, whole, "--input", str(logs["test"]))
    expected, scores = alerts_of(whole), scores_of(whole)
    assert len(scores) > 50 and all(s["event"] == "score" for s in scores)
    attack = [n + 1 for n, line in enumerate(lines) if "Invalid user admin" in line]
    burst = [a for a in expected if a["first_line"] <= attack[-1] and a["last_line"] >= attack[0]]
    assert burst, expected  # the burst alerts
    assert len(expected) >= 1 and all(a["event"] == "alert" for a in expected)

    # 1. the same file, grown while the monitor was stopped: read on from the saved byte offset
    grown, state, out = tmp_path / "grown.log", tmp_path / "grown.state", tmp_path / "grown.jsonl"
    grown.write_text("".join(lines[:k]))
    monitor(model, out, "--input", str(grown), "--state", str(state), "--checkpoint-every", "50")
    saved = json.loads(state.read_text())
    assert saved["format"] == "tsad-log-monitor-state" and saved["version"] == 1
    assert saved["input"]["lines"] == k and saved["counter"]["open"] is not None  # the open row stays open
    burst_year = int(burst[0]["time"][:4])  # the year of the first line is today's
    assert saved["parser"] == {"year": burst_year, "month": 1}  # rolled over at New Year
    with open(grown, "a") as fh:
        fh.write("".join(lines[k:]))
    monitor(model, out, "--input", str(grown), "--state", str(state))
    assert alerts_of(out) == expected and scores_of(out) == scores

    # 2. the first part on a pipe, then the whole stream replayed: what the state covers is skipped
    state, out = tmp_path / "replay.state", tmp_path / "replay.jsonl"
    monitor(model, out, "--state", str(state), stdin="".join(lines[:k]))
    summary = monitor(model, out, "--state", str(state), "--input", str(logs["test"]))
    assert alerts_of(out) == expected and scores_of(out) == scores
    assert f"{k} replayed line(s) already processed skipped" in summary

    # 3. three runs: a first part, a second part and the rest, each on its own pipe (continuations)
    state, out = tmp_path / "parts.state", tmp_path / "parts.jsonl"
    for part in (lines[:k // 2], lines[k // 2:k], lines[k:]):
        monitor(model, out, "--state", str(state), stdin="".join(part))
    assert alerts_of(out) == expected and scores_of(out) == scores


def test_state_of_another_model_is_refused(logs: dict[str, Path], tmp_path: Path) -> None:
    state = tmp_path / "mon.state"
    monitor(logs["lines"], tmp_path / "a.jsonl", "--input", str(logs["test"]), "--state", str(state))
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(logs["bucket"]), "--format", "log",
                                 "--input", str(logs["test"]), "--state", str(state), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.output
    assert len(errors) == 1 and "belongs to another model" in errors[0], result.output
    state.write_text('{"format": "tsad-log-monitor-state", "version": 1, "model_hash": ')
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(logs["bucket"]), "--format", "log",
                                 "--input", str(logs["test"]), "--state", str(state), "--device", "cpu"])
    assert result.exit_code == 2 and "is corrupt" in result.output, result.output


def test_metrics_file_reports_the_log_monitor_and_ignored_options_are_refused(logs: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    monitor(logs["bucket"], tmp_path / "a.jsonl", "--input", str(logs["test"]), "--metrics", str(status))
    got = json.loads(status.read_text())
    lines = logs["test"].read_text().splitlines()
    assert got["lines"] == len(lines) and got["unparsed"] == 1  # the one line that is not syslog
    assert got["alerts"] == len(alerts_of(tmp_path / "a.jsonl")) >= 1 and got["rows"] >= 60
    for option in (["--cooldown", "3"], ["--batch", "1"], ["--adapt"], ["--duplicates", "last"]):
        result = runner.invoke(app, ["tsad", "monitor", "--model", str(logs["bucket"]), "--format", "log",
                                     "--input", str(logs["test"]), "--device", "cpu", *option])
        assert result.exit_code == 2, result.output
        assert f"{option[0]} does not apply to --format log" in result.output
