"""Shared fixtures: the real-data directory (skipped when absent), deterministic seeding, CLI output,
small generated ratings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

_THREADS = min(2, torch.get_num_threads())  # as the session started: a test that lowers it must not leak


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(_THREADS)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared datasets (`AE_DATA_DIR`); tests that need one skip when it is not there."""
    root = os.environ.get("AE_DATA_DIR")
    if not root or not Path(root).is_dir():
        pytest.skip("AE_DATA_DIR is not set to a directory holding the datasets")
    return Path(root)


@pytest.fixture
def flat():  # noqa: ANN201 - a function of the CLI output
    """Typer's error box wraps long messages at the terminal's width (which differs between machines
    and Typer versions): join its lines without the box before looking for a message."""
    return lambda text: " ".join(text.replace("│", " ").split())


def _taste_groups(n_users: int, n_items: int, per_user: int, seed: int = 0) -> pd.DataFrame:
    """Two taste groups: users rate `per_user` items, their group's 4-5 and the others 1-2."""
    rng = np.random.default_rng(seed)
    rows = [(u + 1, i + 1, float(rng.integers(4, 6) if u % 2 == i % 2 else rng.integers(1, 3)))
            for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


@pytest.fixture
def taste_ratings():  # noqa: ANN201 - a factory of rating frames
    """`taste_ratings(n_users, n_items, per_user, seed=0)`: seeded two-group ratings (user, item, rating)."""
    return _taste_groups
