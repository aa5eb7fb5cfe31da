"""`--engine ray --address`: a two-node cluster on this machine (Ray's own multi-node test utility)
reached through its address gives the local rows and is left running for its owner; an address
nobody listens at is one line, exit 1, and writes nothing."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.engines.ray_engine import read_shards

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
runner = CliRunner()


@pytest.fixture(scope="module")
def rec_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cluster")
    rng = np.random.default_rng(1)
    rows = [(u, i, float(rng.integers(1, 6))) for u in range(1, 81) for i in rng.choice(40, 10, replace=False) + 1]
    pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(root / "ratings.csv", index=False)
    result = runner.invoke(app, ["recae", "train", "--dataset", str(root / "ratings.csv"), "--model", "multvae",
                                 "--epochs", "1", "--out", str(root / "rec"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return root / "rec"


def _pythonpath(root: Path) -> str:
    """The project first, then whatever PYTHONPATH already holds (packages installed beside site-packages)."""
    return os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))


def test_an_unreachable_address_is_one_line_exit_1_and_writes_nothing(rec_model: Path, tmp_path: Path,
                                                                      flat) -> None:  # noqa: ANN001
    assert not ray.is_initialized()
    for address, code in (("127.0.0.1:1", 1), ("no-port-here", 2)):
        result = runner.invoke(app, ["recae", "score", "--model", str(rec_model), "--out", str(tmp_path / "recs"),
                                     "--engine", "ray", "--address", address])
        assert result.exit_code == code, result.output
        assert address in flat(result.output)
        assert not list(tmp_path.iterdir())


def test_a_two_node_cluster_reached_by_address_gives_the_local_rows(rec_model: Path, tmp_path: Path) -> None:
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        address = cluster.address
        result = runner.invoke(app, ["recae", "score", "--model", str(rec_model), "--out", str(tmp_path / "recs"),
                                     "--engine", "ray", "--address", address, "--workers", "2",
                                     "--batch-users", "20", "--quiet"])
        assert result.exit_code == 0, result.output
        assert not ray.is_initialized()  # the job disconnected; the cluster is its owner's
        assert len(cluster.list_all_nodes()) == 2
    finally:
        cluster.shutdown()
    local = runner.invoke(app, ["recae", "score", "--model", str(rec_model), "--out", str(tmp_path / "l.parquet"),
                                "--quiet"])
    assert local.exit_code == 0, local.output
    keys = ["user", "rank"]
    pd.testing.assert_frame_equal(read_shards(tmp_path / "recs").sort_values(keys).reset_index(drop=True),
                                  pd.read_parquet(tmp_path / "l.parquet").sort_values(keys).reset_index(drop=True))
    manifest = json.loads((tmp_path / "recs.manifest.json").read_text())
    assert manifest["engine"] == {"name": "ray", "workers": 2, "address": address}
    assert len(manifest["shards"]) == 4


def test_a_ray_job_killed_mid_way_leaves_the_previous_output(rec_model: Path, tmp_path: Path) -> None:
    """`kill -9` of the driver once its first shard is in the temporary folder: OUT is still the
    previous run's, whole; the next run replaces it and leaves no temporaries."""
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")  # importable once Ray is (Ray ships it among its own packages)

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": _pythonpath(root), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "recs"

    def cmd(k: str) -> list[str]:
        return [sys.executable, "-c", "from cli import main; main()", "recae", "score", "--model", str(rec_model),
                "--out", str(out), "-k", k, "--engine", "ray", "--workers", "2", "--batch-users", "5", "--quiet"]

    subprocess.run(cmd("3"), env=env, check=True, capture_output=True)
    before = read_shards(out)
    proc = subprocess.Popen(cmd("5"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".recs.*.tmp/part-*.parquet")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before it could be killed"
        time.sleep(0.05)
    assert list(tmp_path.glob(".recs.*.tmp/part-*.parquet")), "no shard appeared within 120 s"
    # the Ray this driver started (raylet, GCS, workers) outlives a killed driver: end it too, or its
    # workers linger after the suite and slow whatever the machine runs next
    ray_processes = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for child in ray_processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(ray_processes, timeout=10)
    pd.testing.assert_frame_equal(read_shards(out), before)  # the old output, whole
    subprocess.run(cmd("5"), env=env, check=True, capture_output=True)
    assert read_shards(out).groupby("user").size().eq(5).all()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".v")) == []
