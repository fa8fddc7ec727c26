"""The classify configs: one recipe for every scene, and the download path of the scenes that
have a public source, run against a local file server."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import geofm.tasks.pixel_protocol as protocol
from geofm.data.cards import load_dataset_card
from geofm.data.download import MIRROR_ENV, ChecksumError, card_checksums
from geofm.tasks.pixel_protocol import run_protocol
from geofm.tasks.pixel_recipe import load_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "classify"
DOWNLOADABLE = ["indian_pines", "salinas", "pavia_university"]
BY_HAND = ["whu_hi_longkou", "whu_hi_honghu"]


def test_every_scene_uses_the_salinas_a_recipe_unchanged():
    reference = load_recipe(CONFIGS / "lola_salinas_a.yaml")
    names = sorted(p.stem for p in CONFIGS.glob("lola_*.yaml"))
    assert names == sorted(f"lola_{n}" for n in ["salinas_a", *DOWNLOADABLE, *BY_HAND])
    for name in names:
        recipe = load_recipe(CONFIGS / f"{name}.yaml")
        for section in ("split", "model", "train", "baselines"):
            assert getattr(recipe, section) == getattr(reference, section), (name, section)
        card = load_dataset_card(recipe.scene["card"])
        assert card.name in name


@pytest.mark.parametrize("scene", DOWNLOADABLE)
def test_downloadable_scenes_have_urls_and_checksums(scene):
    recipe = load_recipe(CONFIGS / f"lola_{scene}.yaml")
    assert recipe.scene["download"] is True
    card = load_dataset_card(scene)
    files = [card["files"]["image"]["file"], card["files"]["labels"]["file"]]
    assert set(card_checksums(card)) == set(files)
    assert all(card["source"][k].startswith("https://") for k in ("image_url", "labels_url"))


@pytest.mark.parametrize("scene", BY_HAND)
def test_scenes_without_a_public_url_say_where_to_get_them(scene, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(CONFIGS / f"lola_{scene}.yaml")
    with pytest.raises(FileNotFoundError, match="rsidea.whu.edu.cn"):
        protocol.load_recipe_scene(recipe, progress=False)


def _stand_in_indian_pines(folder: Path) -> dict[str, bytes]:
    """A 24 x 24 x 200 scene with the Indian Pines file names and keys: six classes, each
    a noisy copy of its own random spectrum. It stands in for the real files, which cannot
    ship or be downloaded here."""
    rng = np.random.default_rng(0)
    labels = np.zeros((24, 24), dtype=np.uint8)
    for k in range(6):  # six 4-row stripes, classes 1..6
        labels[4 * k : 4 * k + 4, 2:22] = k + 1
    means = rng.uniform(1000, 5000, (7, 200))
    cube = means[labels] + rng.normal(0, 60, (24, 24, 200))
    folder.mkdir(parents=True)
    scipy.io.savemat(
        folder / "Indian_pines_corrected.mat", {"indian_pines_corrected": cube.astype(np.uint16)}
    )
    scipy.io.savemat(folder / "Indian_pines_gt.mat", {"indian_pines_gt": labels})
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_download_config_end_to_end_through_a_local_server(server, tmp_path, monkeypatch):
    files = _stand_in_indian_pines(tmp_path / "stand_in")
    for name, data in files.items():
        server.put(f"ehu/{name}", data)
    monkeypatch.setenv(MIRROR_ENV, f"{server.url}/ehu/")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(CONFIGS / "lola_indian_pines.yaml")

    # the real card pins the published MD5s: the stand-ins are refused, nothing is kept
    with pytest.raises(ChecksumError, match="66dbc9f4a9b7c9b1445f60a87b505101"):
        protocol.load_recipe_scene(recipe, progress=False)
    assert not list((tmp_path / "data" / "hsi" / "indian_pines").glob("*.mat"))

    # with the stand-ins' own checksums in the card, the same config downloads and runs
    real = load_dataset_card("indian_pines")
    sums = {n: "md5:" + hashlib.md5(d).hexdigest() for n, d in files.items()}
    card = dataclasses.replace(
        real, extra={**real.extra, "source": {**real["source"], "checksums": sums}}
    )
    monkeypatch.setattr(protocol, "as_dataset_card", lambda c: card if c == "indian_pines" else c)
    results, classes = run_protocol(
        recipe, 0.2, [0], methods=["svm"], progress=False, echo=lambda s: None
    )
    assert classes[:2] == ["Alfalfa", "Corn-notill"]
    assert results[0].metrics.oa == pytest.approx(1.0)
    assert sum(results[0].counts["test"]) > 0
    assert sorted(p.name for p in (tmp_path / "data" / "hsi" / "indian_pines").iterdir()) == [
        "Indian_pines_corrected.mat",
        "Indian_pines_gt.mat",
    ]
    requests = len(server.requests)
    protocol.load_recipe_scene(recipe, progress=False)  # present and verified: no request
    assert len(server.requests) == requests
