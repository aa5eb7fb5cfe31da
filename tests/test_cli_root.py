"""The `ae` root: help, info, zoo with tiny settings, the data registry, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("info", "zoo", "recae", "tsad", "data"):
        assert name in result.output


def test_info_reports_versions_device_and_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["data_dir"] == str(tmp_path)
    assert report["devices"]["auto"] in {"cpu", "cuda", "mps"}
    assert report["datasets"]["nab"].startswith("missing")


def test_zoo_tiny_run_writes_metrics_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "zoo"
    result = runner.invoke(app, ["zoo", "--out", str(out), "--epochs", "2", "--kinds", "deep,denoising,vae,conv",
                                 "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["models"]
    assert set(metrics) == {"deep", "denoising", "vae", "conv", "pca"}
    assert all(m["code_size"] == 8 and m["test_mse"] > 0 for m in metrics.values())
    assert "noisy_test_mse" in metrics["denoising"] and "noisy_test_mse" in metrics["deep"]
    for png in ("reconstructions.png", "loss_curves.png", "vae_latent.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test_mse" in result.output


@pytest.mark.parametrize("args,message", [
    (["zoo", "--epochs", "-1"], "epochs"),
    (["zoo", "--kinds", "deep,wavelet"], "unknown kind"),
    (["zoo", "--code-size", "0"], "code-size"),
    (["zoo", "--device", "tpu"], "unknown device"),
])
def test_bad_zoo_arguments_exit_non_zero_with_one_line(tmp_path: Path, args, message) -> None:
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "z"), "--quiet"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "z").exists()


def test_unwritable_out_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["zoo", "--out", str(blocker), "--epochs", "1", "--kinds", "vanilla", "--quiet"])
    assert result.exit_code == 2
    assert "not a directory" in result.output


def test_data_list_and_missing_dataset_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["data", "list"])
    assert result.exit_code == 0 and "ml-100k" in result.output
    result = runner.invoke(app, ["data", "verify", "nab"])
    assert result.exit_code == 1 and "missing or changed" in result.output
    result = runner.invoke(app, ["data", "fetch", "no-such-set"])
    assert result.exit_code == 2 and "unknown dataset" in result.output


def test_registered_datasets_verify_against_shared_data(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from data.registry import ensure_dataset, verify

    monkeypatch.setenv("AE_DATA_DIR", str(data_dir))
    assert verify("ml-100k") == []
    assert ensure_dataset("nab") == data_dir


def test_demo_without_data_or_network_says_what_to_download(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_DATA_DIR", str(tmp_path / "empty"))
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--no-download", "--quiet"])
    assert result.exit_code == 1
    assert "ml-100k.zip" in result.output and str(tmp_path / "empty") in result.output
    assert not (tmp_path / "demo").exists()


def test_the_ae_program_flushes_its_output_and_keeps_the_exit_code(tmp_path: Path) -> None:
    """`cli.main` skips the interpreter's teardown (slow with torch loaded): what a command printed
    must still arrive, and its exit code must be kept."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}

    def ae(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from cli import main; main()", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    listed = ae("data", "list")
    assert listed.returncode == 0 and "ml-100k" in listed.stdout
    bad = ae("tsad", "detect", "--model", str(tmp_path / "none"), "--data", str(tmp_path / "none.csv"),
             "--out", str(tmp_path / "o.csv"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr
    usage = ae("tsad", "detect", "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr
