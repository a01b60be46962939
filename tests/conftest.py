from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SHARED_DATA = REPO.parent / "shared" / "data"

# Two cores: keep intra-op threads fixed so timings and results do not depend on the machine's core count.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (see the README of ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar10_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CIFAR-10 training split from ../shared/data, extracted once per session."""
    import tarfile

    archive = SHARED_DATA / "cifar10-train.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found (see the README of ../shared/data)")
    out = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    return out / "train"
