"""Logs through `ae tsad train / detect / monitor`: an OpenSSH log with a brute-force burst, and bad inputs."""

from __future__ import annotations

import json
import random
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
USERS = ["fred", "alice", "bob", "deploy", "git"]
BAD_USERS = ["admin", "oracle", "test", "guest", "ubuntu", "pi", "support", "postgres"]
FAILED = "Failed password for invalid user <*> from <IP> port <NUM> ssh2"
START = datetime(2024, 3, 1)
TRAIN_MINUTES, BURST = 360, (60, 2)  # the burst: minutes 60 and 61 of the test part


def _ip(rng: random.Random) -> str:
    return f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _failed(rng: random.Random, ip: str) -> list[tuple[int, str]]:
    pid, port, user = rng.randint(1000, 30000), rng.randint(1024, 65000), rng.choice(BAD_USERS)
    return [(pid, f"Invalid user {user} from {ip}"),
            (pid, f"Failed password for invalid user {user} from {ip} port {port} ssh2"),
            (pid, f"Connection closed by {ip} [preauth]")]


def ssh_log(minutes: int, start: datetime, seed: int, burst: tuple[int, int] | None = None) -> list[str]:
    """A few logins a minute, a failed login now and then; `burst` = (first minute, minutes) of ~150
    lines a minute from one attacker."""
    rng = random.Random(seed)
    out = []
    for m in range(minutes):
        events: list[tuple[int, str]] = []
        for _ in range(rng.randint(2, 5)):
            user, ip, pid, port = rng.choice(USERS), _ip(rng), rng.randint(1000, 30000), rng.randint(1024, 65000)
            events += [(pid, f"Accepted password for {user} from {ip} port {port} ssh2"),
                       (pid, f"pam_unix(sshd:session): session opened for user {user} by (uid=0)"),
                       (pid, f"Received disconnect from {ip}: 11: disconnected by user"),
                       (pid, f"pam_unix(sshd:session): session closed for user {user}")]
        if rng.random() < 0.3:
            events += _failed(rng, _ip(rng))
        if burst is not None and burst[0] <= m < burst[0] + burst[1]:
            attacker = _ip(rng)
            for _ in range(50):
                events += _failed(rng, attacker)
        seconds = sorted(rng.uniform(0, 59.9) for _ in events)
        for s, (pid, msg) in zip(seconds, events):
            t = start + timedelta(minutes=m, seconds=s)
            out.append(f"{t:%b} {t.day:2d} {t:%H:%M:%S} LabSZ sshd[{pid}]: {msg}")
    return out


def _errors(output: str) -> list[str]:
    assert "Traceback" not in output
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)  # a small dense network: one thread is fastest (and the fixture's seeding is ours)
    d = tmp_path_factory.mktemp("logcli")
    (d / "train.log").write_text("\n".join(ssh_log(TRAIN_MINUTES, START, seed=0)) + "\n")
    test = ssh_log(120, START + timedelta(minutes=TRAIN_MINUTES), seed=1, burst=BURST)
    test.insert(5, "this line is not syslog")
    test.insert(300, f"{test[299][:15]} LabSZ sshd[4242]: Server listening on 0.0.0.0 port 22.")  # a new template
    (d / "test.log").write_text("\n".join(test) + "\n")
    model = d / "model"
    result = runner.invoke(app, ["tsad", "train", "--format", "log", "--log-format", "openssh", "--bucket", "1min",
                                 "--data", str(d / "train.log"), "--out", str(model), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "7 templates" in result.output
    return {"dir": d, "model": model, "test": d / "test.log"}


def test_detect_alerts_the_burst_and_names_its_template(logs: dict[str, Path]) -> None:
    out = logs["dir"] / "scores.csv"
    result = runner.invoke(app, ["tsad", "detect", "--model", str(logs["model"]), "--data", str(logs["test"]),
                                 "--out", str(out), "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "1 not matching the format (lines 6)" in result.output  # reported, not fatal
    assert "1 line(s) match no training template" in result.output and "Server listening" in result.output
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["time", "first_line", "last_line", "lines", "score", "score_prob", "is_anomaly",
                                    "new_templates", "templates"]
    assert len(scores) == 120
    alerted = set(scores.index[scores["is_anomaly"]])
    burst = set(range(BURST[0], BURST[0] + BURST[1]))
    assert burst <= alerted and len(alerted - burst) <= 1, scores.loc[sorted(alerted), ["time", "score"]]
    for k in burst:
        text = scores.loc[k, "templates"]
        assert f"{FAILED}: " in text and " in 1 min (usual " in text
        assert scores.loc[k, "lines"] > 150
    assert scores["new_templates"].sum() == 1
    assert scores["score"][:3].isna().all() and scores["score"][3:].notna().all()  # window of 4 rows

    # the monitor on the same lines (stdin): one JSON line per alerted row, the same rows and text
    stream = logs["test"].read_text()
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(logs["model"]), "--format", "log",
                                 "--device", "cpu"], input=stream)
    assert result.exit_code == 0, result.output
    alerts = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [a["first_line"] for a in alerts] == scores.loc[sorted(alerted), "first_line"].tolist()
    assert all(a["event"] == "alert" for a in alerts)
    burst_alert = next(a for a in alerts if a["lines"] > 150)
    assert any(t.startswith(f"{FAILED}: ") for t in burst_alert["templates"])


@pytest.mark.parametrize("args,message", [
    (["--log-format", "cisco"], "unknown --log-format 'cisco'"),
    (["--log-format", "apache"], "matches log format 'apache'"),
    (["--log-regex", "(unclosed"], "does not compile"),
    (["--bucket", "fortnight"], "not a fixed-length pandas offset"),
])
def test_bad_training_inputs_are_one_line(logs: dict[str, Path], tmp_path: Path, args: list[str],
                                          message: str) -> None:
    result = runner.invoke(app, ["tsad", "train", "--format", "log", *args, "--data", str(logs["test"]),
                                 "--out", str(tmp_path / "m"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 2, result.output
    errors = _errors(result.output)
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "m").exists()


def test_log_options_need_format_log(logs: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["tsad", "train", "--log-format", "openssh", "--data", str(logs["test"]),
                                 "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "--format log" in _errors(result.output)[0]


@pytest.mark.parametrize("damage", ["garbage", "rehashed"])
def test_damaged_miner_state_is_refused(logs: dict[str, Path], tmp_path: Path, damage: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(logs["model"], model)
    state = json.loads((model / "templates.json").read_text())
    if damage == "garbage":
        (model / "templates.json").write_text('{"format": "tsad-log-templates", "clu')
        expect = "does not match its recorded checksum"
    else:  # a consistent checksum, but a cluster without tokens: the miner's own validation
        import hashlib

        state["clusters"][0]["tokens"] = "not a list"
        data = (json.dumps(state) + "\n").encode()
        (model / "templates.json").write_bytes(data)
        manifest = json.loads((model / "log.json").read_text())
        manifest["files"]["templates.json"] = hashlib.sha256(data).hexdigest()
        (model / "log.json").write_text(json.dumps(manifest))
        expect = "tokens must be a list"
    for cmd in (["detect", "--data", str(logs["test"]), "--out", str(tmp_path / "s.csv")],
                ["monitor", "--format", "log", "--input", str(logs["test"])]):
        result = runner.invoke(app, ["tsad", *cmd, "--model", str(model), "--device", "cpu"])
        assert result.exit_code == 2, result.output
        errors = _errors(result.output)
        assert len(errors) == 1 and expect in errors[0], result.output


def test_log_model_refuses_table_paths(logs: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(logs["model"]), "--input", str(logs["test"])])
    assert result.exit_code == 2 and "--format log" in _errors(result.output)[0]
    # `score` reads log files with a log model (tests/test_tsad_logscore.py); line 6 is not syslog: exit 3
    result = runner.invoke(app, ["tsad", "score", "--model", str(logs["model"]), "--input", str(logs["test"]),
                                 "--out", str(tmp_path / "o.csv"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 3 and "1 line(s) rejected" in result.output


def test_evaluate_bgl_reports_the_autoencoder_beside_pca_and_isolation_forest(data_dir: Path, tmp_path: Path) -> None:
    """`ae tsad evaluate --benchmark bgl`: the loglizer protocol on BGL_2k, one JSON shape with the
    other benchmarks (metrics = the autoencoder, baselines, tuning = the part that chose settings)."""
    torch.set_num_threads(1)
    out = tmp_path / "bgl.json"
    result = runner.invoke(app, ["tsad", "evaluate", "--benchmark", "bgl", "--device", "cpu", "--quiet",
                                 "--json", str(out)], env={"AE_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "bgl" and set(doc["baselines"]) == {"pca", "pca_q_statistic", "isolation_forest"}
    for metrics in (doc["metrics"], *doc["baselines"].values()):
        assert 0.0 <= metrics["pr_auc"] <= 1.0 and 0.0 <= metrics["f1"] <= 1.0
    assert doc["data"]["test_windows"] == 20 and doc["data"]["anomalous_test"] == 8
    assert doc["tuning"]["ae_chosen"] in doc["tuning"]["ae_grid"]
    # a single test part: the corpus keys hold the same figures
    assert doc["metrics_all"] == doc["metrics"] and doc["baselines_all"] == doc["baselines"]
    assert "isolation_forest" in result.output


def test_hdfs_burst_of_exceptions_raises_one_alert_naming_the_template(data_dir: Path, tmp_path: Path) -> None:
    """Loghub's HDFS sample: train on its first 1,500 lines (windows of 20 lines), then monitor the
    rest with 40 `Got exception while serving` lines injected after its 250th line: the burst
    alerts and the alert names that template; at most one other alert."""
    torch.set_num_threads(1)
    lines = (data_dir / "loghub" / "HDFS" / "HDFS_2k.log").read_text().splitlines()
    (tmp_path / "train.log").write_text("\n".join(lines[:1500]) + "\n")
    rest, at = lines[1500:], 250
    stamp = " ".join(rest[at].split()[:2])
    burst = [f"{stamp} {3000 + i} WARN dfs.DataNode$DataXceiver: 10.251.30.{i % 200}:50010:Got exception while "
             f"serving blk_{1000 + i} to /10.251.90.{i % 100}:" for i in range(40)]
    (tmp_path / "test.log").write_text("\n".join(rest[:at] + burst + rest[at:]) + "\n")
    trained = runner.invoke(app, ["tsad", "train", "--format", "log", "--log-format", "hdfs", "--lines", "20",
                                  "--data", str(tmp_path / "train.log"), "--out", str(tmp_path / "m"),
                                  "--device", "cpu", "--quiet"])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["tsad", "monitor", "--model", str(tmp_path / "m"), "--format", "log",
                                 "--input", str(tmp_path / "test.log"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    alerts = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    first, last = at + 1, at + len(burst)  # the burst's line numbers in test.log
    on_burst = [a for a in alerts if a["first_line"] <= last and a["last_line"] >= first]
    assert len(on_burst) == 1 and any("Got exception while serving" in t for t in on_burst[0]["templates"])
    assert len(alerts) - len(on_burst) <= 1, alerts
