"""Shared fixtures: paths to the real samples that ship in ``datasets/samples``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Triton kernels must see this before any module that defines one is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datasets" / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def eurosat_dir() -> Path:
    return SAMPLES / "eurosat_ms"


@pytest.fixture(scope="session")
def salinas_a_dir() -> Path:
    return SAMPLES / "salinas_a"


@pytest.fixture(scope="session")
def landsat_tif() -> Path:
    return SAMPLES / "landsat_rgb" / "RGB.byte.tif"


@pytest.fixture(scope="session")
def s2_tile_dir() -> Path:
    return SAMPLES / "s2_l1c_t33uuu" / "IMG_DATA"
