"""Shared by the upstream lane: the tiny model and dataset folders, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.upstream.genrl_swarm import build_dataset_dir, build_model_dir


@pytest.fixture(scope="session")
def genrl_assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model dir, dataset dir) for every upstream node of the session."""
    root = tmp_path_factory.mktemp("genrl-assets")
    return build_model_dir(root / "model"), build_dataset_dir(root / "data")
