"""Benchmark fixtures: the real config parser (built once) and grid files written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medtransfer.grid.resolve import ConfigResolver


@pytest.fixture(scope="session")
def resolver() -> ConfigResolver:
    return ConfigResolver()


@pytest.fixture
def write_grid(tmp_path: Path):
    """Write a grid file (a dict) into tmp_path; its runs go to tmp_path/out unless the dict says
    otherwise."""

    def write(grid: dict, name: str = "grid.yaml") -> Path:
        grid = {"output_dir": str(tmp_path / "out"), **grid}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(grid, sort_keys=False))
        return path

    return write
