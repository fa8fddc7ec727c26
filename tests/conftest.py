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


def _sample_digests() -> dict[str, str]:
    import hashlib

    lines = (SAMPLES / "SHA256SUMS").read_text().splitlines()
    return {name: hashlib.sha256((SAMPLES / name).read_bytes()).hexdigest()
            for name in (line.split(maxsplit=1)[1] for line in lines)}


@pytest.fixture(scope="session", autouse=True)
def bundled_samples_stay_unmodified():
    """Nothing geofm does may write to the shipped samples: every file matches its recorded
    checksum before the first test and again after the last."""
    recorded = {line.split(maxsplit=1)[1]: line.split()[0]
                for line in (SAMPLES / "SHA256SUMS").read_text().splitlines()}
    assert _sample_digests() == recorded, "bundled samples differ from SHA256SUMS"
    yield
    assert _sample_digests() == recorded, "a test modified the bundled samples"
