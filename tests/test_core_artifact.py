"""Model directories: identical outputs after a round trip, clear errors for damaged ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.artifact import CONFIG_NAME, WEIGHTS_NAME, directory_hash, load_artifact, save_artifact
from core.conv1d import Conv1dAE, Conv1dConfig
from core.dense import DenseAE, DenseConfig
from core.errors import ArtifactError, UserError
from core.jobs.atomic import atomic_dir, atomic_path, atomic_write_text
from core.models import conv1d_vae


@pytest.mark.parametrize("build,shape", [
    (lambda: DenseAE(DenseConfig(input_dim=10, hidden=[6], code_size=2, dropout=0.1)), (3, 10)),
    (lambda: Conv1dAE(Conv1dConfig(in_channels=2, length=20, channels=[4, 3])), (3, 2, 20)),
    (lambda: conv1d_vae(1, 16, 3, channels=[4]), (3, 1, 16)),
])
def test_round_trip_gives_identical_outputs(tmp_path: Path, build, shape) -> None:
    model = build().eval()
    x = torch.randn(shape)
    save_artifact(tmp_path / "m", model, kind="test", extras={"ids": [1, 2]}, metrics={"mse": 0.1},
                  tensors={"scale": torch.tensor([2.0])})
    art = load_artifact(tmp_path / "m", expected_kind="test")
    assert torch.equal(model.reconstruct(x), art.model.reconstruct(x))
    assert art.extras == {"ids": [1, 2]} and art.metrics == {"mse": 0.1}
    assert torch.equal(art.tensors["scale"], torch.tensor([2.0]))
    assert "torch" in art.meta["versions"]


def _saved(tmp_path: Path) -> Path:
    return save_artifact(tmp_path / "m", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="test")


def test_missing_directory_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nope")


def test_missing_weights_is_clear(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / WEIGHTS_NAME).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(path)


def test_truncated_weights_are_caught_by_checksum(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    data = (path / WEIGHTS_NAME).read_bytes()
    (path / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(path)


def test_tampered_config_is_clear(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_artifact(path)
    cfg = json.loads(json.dumps({"format": "ae-model-dir", "schema_version": 99}))
    (path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="schema version"):
        load_artifact(path)


def test_wrong_kind_is_clear(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with pytest.raises(ArtifactError, match="not a 'recommender'"):
        load_artifact(path, expected_kind="recommender")


def test_directory_hash_changes_with_weights(tmp_path: Path) -> None:
    a = save_artifact(tmp_path / "a", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="t")
    torch.manual_seed(9)
    b = save_artifact(tmp_path / "b", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="t")
    assert directory_hash(a) != directory_hash(b)


def test_failed_atomic_dir_leaves_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "old.txt").read_text() == "old"


def test_failed_atomic_file_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_writing_under_a_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        atomic_write_text(tmp_path / "file" / "out.txt", "y")


def test_atomic_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "f.txt", "x")
    (tmp_path / "plain.txt").write_text("x")  # what open() gives under this umask
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


# ------------------------------------------------------------------ replacement is gap-free for readers
def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_overwriting_a_model_never_shows_readers_a_gap(tmp_path: Path) -> None:
    import threading

    from core.artifact import read_config

    path = save_artifact(tmp_path / "m", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="test",
                         extras={"n": -1})
    stop, errors, seen = threading.Event(), [], []

    def poll() -> None:
        while not stop.is_set():
            try:
                seen.append(read_config(path)["extras"]["n"])
            except Exception as exc:  # noqa: BLE001 - any failure is the defect
                errors.append(repr(exc))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        model = DenseAE(DenseConfig(input_dim=4, code_size=2))
        for n in range(120):
            save_artifact(path, model, kind="test", extras={"n": n})
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert len(seen) > 100 and seen == sorted(seen)  # every read saw one whole version, in order
    assert read_config(path)["extras"]["n"] == 119
    versions = [n for n in _listing(tmp_path) if n != "m"]
    assert len(versions) == 1 and versions[0].startswith(".m.") and versions[0].endswith(".v")


def test_model_path_is_a_relative_link_so_the_folder_can_move(tmp_path: Path) -> None:
    import os

    path = save_artifact(tmp_path / "models" / "m", DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="test")
    assert path.is_symlink() and "/" not in os.readlink(path)
    digest = directory_hash(path)
    (tmp_path / "models").rename(tmp_path / "moved")
    moved = tmp_path / "moved" / "m"
    assert directory_hash(moved) == digest
    load_artifact(moved, expected_kind="test")


def test_a_model_directory_of_the_old_layout_is_replaced(tmp_path: Path) -> None:
    import shutil

    path = _saved(tmp_path)
    real = tmp_path / "real"
    shutil.copytree(path, real)  # what older versions wrote: a plain folder under the name
    assert directory_hash(real) == directory_hash(path)
    load_artifact(real)
    torch.manual_seed(3)
    save_artifact(real, DenseAE(DenseConfig(input_dim=4, code_size=2)), kind="new")
    assert real.is_symlink() and load_artifact(real).meta["kind"] == "new"
    assert [n for n in _listing(tmp_path) if n.startswith(".real.")] == [os_readlink(real)]


def os_readlink(path: Path) -> str:
    import os

    return os.readlink(path)


def test_a_failed_overwrite_keeps_the_linked_version(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    before, digest = _listing(tmp_path), directory_hash(path)
    with pytest.raises(RuntimeError):
        with atomic_dir(path) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert _listing(tmp_path) == before and directory_hash(path) == digest


def test_model_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o027)
    try:
        path = _saved(tmp_path)
    finally:
        os.umask(old)
    assert (path / CONFIG_NAME).stat().st_mode & 0o777 == 0o640
    assert (path / WEIGHTS_NAME).stat().st_mode & 0o777 == 0o640
    assert path.resolve().stat().st_mode & 0o777 == 0o750


# ---------------------------------------------------------------------- stale temporaries of killed writers
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_stale_temporaries_are_removed_on_the_next_successful_write(tmp_path: Path) -> None:
    import os
    import time

    from core.jobs.atomic import STALE_AGE, _host_tag

    host, dead, live = _host_tag(), _dead_pid(), os.getpid()
    old = time.time() - STALE_AGE - 60
    stale = [f".out.parquet.{host}-{dead}.abcd1234.tmp", ".out.parquet.k2j4_x9a.tmp",  # dead writer; old legacy
             f".m.{host}-{dead}.zzzz9999.tmp", f".m.{host}-{dead}.yyyy8888.v", ".m.q1w2e3r4.old"]
    kept = [f".out.parquet.{host}-{live}.efgh5678.tmp",  # a live writer's (this process)
            ".out.parquet.fresh123.tmp",  # legacy name, recently modified: maybe a live old-version writer
            f".out.parquet.ffffffff-{dead}.abcd1234.tmp",  # another host: its pid cannot be checked here
            ".other.parquet.k2j4_x9a.tmp", ".out.parquet.bak", "notes.txt"]  # not temporaries of these names
    for name in stale + kept:
        p = tmp_path / name
        if name.startswith(".m."):
            p.mkdir()
            (p / "config.json").write_text("{}")
        else:
            p.write_text("x")
    for name in (".out.parquet.k2j4_x9a.tmp", ".m.q1w2e3r4.old", ".other.parquet.k2j4_x9a.tmp"):
        os.utime(tmp_path / name, (old, old))
    atomic_write_text(tmp_path / "out.parquet", "new")
    _saved(tmp_path)
    names = _listing(tmp_path)
    assert not set(stale) & set(names)
    assert set(kept) <= set(names)
    assert sorted(set(names) - set(kept)) == sorted(["m", "out.parquet", os_readlink(tmp_path / "m")])


def test_a_killed_writer_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = ("import os, signal, sys\n"
              "from pathlib import Path\n"
              "from core.jobs.atomic import atomic_dir, atomic_path\n"
              "d = Path(sys.argv[1])\n"
              "a = atomic_path(d / 'out.parquet'); tmp = a.__enter__(); tmp.write_text('half')\n"
              "b = atomic_dir(d / 'm'); t = b.__enter__(); (t / 'config.json').write_text('half')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=root, capture_output=True)
    assert proc.returncode == -9, proc.stderr
    assert len(_listing(tmp_path)) == 2  # the two temporaries, nothing else
    atomic_write_text(tmp_path / "out.parquet", "whole")
    _saved(tmp_path)
    assert _listing(tmp_path) == sorted(["m", "out.parquet", os_readlink(tmp_path / "m")])
