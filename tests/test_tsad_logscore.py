"""`ae tsad score` on a log model: files/globs of logs, each its own stream, scored as `detect` scores
one, with a run manifest (rejected lines with their numbers, exit 3, --skip-existing)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
USERS = ["fred", "alice", "bob"]
START = datetime(2024, 3, 1)


def _ip(rng: random.Random) -> str:
    return f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ssh_log(minutes: int, start: datetime, seed: int, burst: int | None = None) -> list[str]:
    """A few logins a minute; at minute `burst`, 40 failed logins from one attacker."""
    rng = random.Random(seed)
    out = []
    for m in range(minutes):
        events = []
        for _ in range(rng.randint(2, 4)):
            user, ip, pid = rng.choice(USERS), _ip(rng), rng.randint(1000, 30000)
            events += [(pid, f"Accepted password for {user} from {ip} port {rng.randint(1024, 65000)} ssh2"),
                       (pid, f"pam_unix(sshd:session): session closed for user {user}")]
        if m == burst:
            attacker = _ip(rng)
            events += [(rng.randint(1000, 30000), f"Failed password for invalid user admin from {attacker} port "
                        f"{rng.randint(1024, 65000)} ssh2") for _ in range(40)]
        for s, (pid, msg) in zip(sorted(rng.uniform(0, 59.9) for _ in events), events):
            t = start + timedelta(minutes=m, seconds=s)
            out.append(f"{t:%b} {t.day:2d} {t:%H:%M:%S} LabSZ sshd[{pid}]: {msg}")
    return out


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("logscore")
    (d / "train.log").write_text("\n".join(ssh_log(200, START, seed=0)) + "\n")
    inbox = d / "inbox"
    inbox.mkdir()
    (inbox / "a.log").write_text("\n".join(ssh_log(30, START + timedelta(hours=4), seed=1, burst=20)) + "\n")
    (inbox / "b.log").write_text("\n".join(ssh_log(25, START + timedelta(hours=5), seed=2)) + "\n")
    model = d / "model"
    result = runner.invoke(app, ["tsad", "train", "--format", "log", "--log-format", "openssh", "--bucket", "1min",
                                 "--epochs", "15", "--data", str(d / "train.log"), "--out", str(model),
                                 "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return {"dir": d, "model": model, "inbox": inbox}


def _score(logs: dict[str, Path], inputs: list[str], out: Path, *extra: str):  # noqa: ANN202 - a typer Result
    args = ["tsad", "score", "--model", str(logs["model"]), "--out", str(out), "--device", "cpu", "--threads", "1",
            "--quiet"]
    for spec in inputs:
        args += ["--input", spec]
    return runner.invoke(app, args + list(extra))


def _texts(column: pd.Series) -> list[str]:
    return [t if isinstance(t, str) else "" for t in column]  # CSV reads an all-empty column as NaN


def test_score_over_log_files_equals_detect_per_file(logs: dict[str, Path]) -> None:
    out = logs["dir"] / "scores.parquet"
    result = _score(logs, [str(logs["inbox"] / "*.log")], out)
    assert result.exit_code == 0, result.output
    assert "log lines from 2 file(s)" in result.output
    scores = pd.read_parquet(out)
    assert list(scores.columns) == ["source", "time", "first_line", "last_line", "lines", "score", "score_prob",
                                    "is_anomaly", "new_templates", "templates"]
    for name, minutes in (("a.log", 30), ("b.log", 25)):
        path = logs["inbox"] / name
        det_out = logs["dir"] / f"detect-{name}.csv"
        detected = runner.invoke(app, ["tsad", "detect", "--model", str(logs["model"]), "--data", str(path),
                                       "--out", str(det_out), "--device", "cpu", "--threads", "1"])
        assert detected.exit_code == 0, detected.output
        want = pd.read_csv(det_out)
        got = scores[scores["source"] == str(path)].reset_index(drop=True)
        assert len(got) == len(want) == minutes
        np.testing.assert_allclose(got["score"].to_numpy(float), want["score"].to_numpy(float), rtol=1e-6,
                                   equal_nan=True)
        assert got["is_anomaly"].tolist() == want["is_anomaly"].tolist()
        assert got["first_line"].tolist() == want["first_line"].tolist()
        assert got["lines"].tolist() == want["lines"].tolist()
        assert _texts(got["templates"]) == _texts(want["templates"])
        assert got["score"][:3].isna().all()  # each file its own stream: no history at its start
    burst = scores[(scores["source"] == str(logs["inbox"] / "a.log")) & scores["is_anomaly"]]
    assert 20 in burst.index and ": 40 in 1 min (usual 0.0" in burst.loc[20, "templates"]  # unseen in training
    doc = json.loads(Path(str(out) + ".manifest.json").read_text())
    assert doc["exit_code"] == 0 and doc["status"] == "ok" and doc["rejected"] == []
    assert [Path(e["path"]).name for e in doc["inputs"]] == ["a.log", "b.log"]
    assert all(len(e["sha256"]) == 64 for e in doc["inputs"]) and len(doc["model_hash"]) == 64
    assert doc["rows_out"] == 55 and doc["rows_in"] == sum(e["lines"] for e in doc["inputs"])
    assert [e["scored"] for e in doc["inputs"]] == [27, 22]

    # a folder of logs is read too (all its files), with the same rows
    again = _score(logs, [str(logs["inbox"])], logs["dir"] / "folder.csv")
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(logs["dir"] / "folder.csv")) == 55


def test_unparseable_lines_are_rejected_with_their_line_numbers_exit_3(logs: dict[str, Path]) -> None:
    lines = (logs["inbox"] / "b.log").read_text().splitlines()
    lines.insert(4, "this line is not syslog")
    lines.insert(10, "neither is this one")
    bad = logs["dir"] / "bad.log"
    bad.write_text("\n".join(lines) + "\n")
    empty = logs["dir"] / "garbage.log"
    empty.write_text("no log here\nnor here\n")
    out = logs["dir"] / "bad.csv"
    result = _score(logs, [str(bad), str(empty)], out)
    assert result.exit_code == 3, result.output
    assert "rejected" in result.output
    doc = json.loads(Path(str(out) + ".manifest.json").read_text())
    assert doc["exit_code"] == 3 and doc["status"] == "partial"
    lines_rejected = [r for r in doc["rejected"] if r["input"] == str(bad)]
    assert [r["row"] for r in lines_rejected] == [5, 11]
    assert doc["inputs"][0]["rejected"] == 2 and doc["inputs"][0]["parsed"] == len(lines) - 2
    whole = [r for r in doc["rejected"] if r["input"] == str(empty)]
    assert len(whole) == 1 and whole[0]["row"] is None and doc["inputs"][1]["rejected"] == "file"
    assert len(pd.read_csv(out)) == 25  # the good rows of bad.log are still written


@pytest.mark.parametrize("extra,message", [
    (["--state", "st"], "--state does not apply to log models"),
    (["--series-col", "host"], "--series-col does not apply to log models"),
    (["--engine", "ray"], "--engine ray does not score log models yet"),
])
def test_options_that_do_not_apply_to_logs_are_refused_in_one_line(logs: dict[str, Path], extra: list[str],
                                                                   message: str) -> None:
    out = logs["dir"] / "refused.parquet"
    result = _score(logs, [str(logs["inbox"] / "a.log")], out, *extra)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output
    assert not out.exists()


def test_skip_existing_skips_an_unchanged_run_and_reruns_after_a_change(logs: dict[str, Path], tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.log").write_bytes((logs["inbox"] / "a.log").read_bytes())
    out = tmp_path / "s.parquet"
    first = _score(logs, [str(inbox / "*.log")], out, "--skip-existing")
    assert first.exit_code == 0, first.output
    assert "wrote" in first.output
    second = _score(logs, [str(inbox / "*.log")], out, "--skip-existing")
    assert second.exit_code == 0 and "up to date; nothing to do" in second.output
    (inbox / "b.log").write_bytes((logs["inbox"] / "b.log").read_bytes())  # a new file: a new run
    third = _score(logs, [str(inbox / "*.log")], out, "--skip-existing")
    assert third.exit_code == 0 and "up to date" not in third.output
    assert len(pd.read_parquet(out)) == 55


# ------------------------------------------------------------------------------------- `ae demo`'s log section
def test_demo_injects_the_burst_in_the_longest_quiet_stretch_in_time_order() -> None:
    from tsad.demo import _minute, inject_burst

    lines = ssh_log(10, START, seed=3)
    lines = [t for t in lines if not START + timedelta(minutes=3) <= _when(t) < START + timedelta(minutes=8)]
    injected, at, first = inject_burst(lines, seed=0, attempts=5)
    assert len(injected) == len(lines) + 15 and f"{at:%H:%M}" == "00:05"
    assert "Failed password for invalid user" in injected[first + 1]  # `first` counts lines from 1
    minutes = [_minute(t) for t in injected]
    assert minutes == sorted(minutes)


def _when(line: str) -> datetime:
    return datetime.strptime(f"2024 {line[:15]}", "%Y %b %d %H:%M:%S")


def test_demo_log_section_is_skipped_with_a_note_without_loghub(tmp_path: Path) -> None:
    from tsad.demo import run_logs

    section = run_logs(tmp_path, tmp_path, "cpu", 0, True, False)
    assert len(section.blocks) == 1 and "Skipped" in section.blocks[0] and "loghub" in section.blocks[0]


def test_demo_log_section_alerts_the_injected_burst_only(data_dir: Path, tmp_path: Path) -> None:
    from tsad.demo import LOG_SAMPLE, run_logs

    if not (data_dir / LOG_SAMPLE).is_file():
        pytest.skip("no loghub/OpenSSH under AE_DATA_DIR")
    torch.set_num_threads(1)
    section = run_logs(data_dir, tmp_path, "cpu", 0, True, False)
    text = "".join(section.blocks)
    assert "1 alert(s)" in text and "<td>yes</td>" in text and "<td>no</td>" not in text
    failed = "Failed password for invalid user &lt;*&gt; from &lt;IP&gt; port &lt;NUM&gt; ssh2"
    assert f"{failed}: 1000 in 1 min (usual" in text
