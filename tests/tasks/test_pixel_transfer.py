"""Transfer across scenes: a base classifier adapted to a scene with other bands by LoRA,
fully fine-tuned, or trained from scratch, on one split; the base's PCA carried over by
band (``model.base_pca: matched``).

The "other scene" is the bundled Salinas-A with its bands reversed, five of them dropped
and two bands no AVIRIS channel has added: what matters here is that bands are matched by
name and wavelength, not by position (the real cross-scene runs, Indian Pines and
Salinas-A, are in ``docs/pixel_classification.md``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_LOLA

from geofm.data.cards import BandMatchError, data_dir
from geofm.data.datasets import read_scene
from geofm.models.lola_specvit import SpectralReduction
from geofm.tasks.pixel import classify_pixels
from geofm.tasks.pixel_models import (
    build_classifier,
    load_classifier,
    matched_basis,
    read_classifier,
)
from geofm.tasks.pixel_protocol import run_protocol
from geofm.tasks.pixel_recipe import RecipeError, load_recipe, transfer_recipe
from geofm.tasks.pixel_results import read_results, write_results

SALINAS_A = {
    "card": "salinas_a",
    "cube": "{data}/samples/salinas_a/SalinasA_corrected.hdr",
    "gt": "{data}/samples/salinas_a/SalinasA_gt.mat",
}
DROPPED = ["C001", "C050", "C100", "C150", "C200"]
FOREIGN = ["X1", "X2"]


@pytest.fixture(scope="module")
def salinas_a():
    root = data_dir() / "samples" / "salinas_a"
    return read_scene(root / "SalinasA_corrected.hdr", root / "SalinasA_gt.mat", "salinas_a")


@pytest.fixture(scope="module")
def other(salinas_a):
    """Salinas-A's pixels on another band list: reversed, 5 bands dropped, 2 added."""
    keep = [i for i, b in enumerate(salinas_a["bands"]) if b not in DROPPED][::-1]
    image = salinas_a["image"][keep]
    extra = torch.rand(len(FOREIGN), *image.shape[1:], generator=torch.Generator().manual_seed(0))
    scene = dict(salinas_a)
    scene["image"] = torch.cat([image, 1000 * extra])
    scene["bands"] = tuple(salinas_a["bands"][i] for i in keep) + tuple(FOREIGN)
    scene["wavelengths"] = torch.cat(
        [salinas_a["wavelengths"][keep], torch.tensor([3000.0, 3100.0])]
    )
    return scene


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny LoLA-SpecViT trained on Salinas-A for one epoch, saved as a base."""
    recipe = load_recipe(
        {"scene": SALINAS_A, "model": {"kwargs": TINY_LOLA}, "train": {"epochs": 1}}
    )
    results, _ = run_protocol(
        recipe,
        0.05,
        [0],
        methods=["lola"],
        progress=False,
        save_dir=tmp_path_factory.mktemp("base"),
        echo=lambda s: None,
    )
    return results[0].details["checkpoint"]


def _transfer(base, **model):
    return load_recipe(
        {
            "scene": SALINAS_A,
            "model": {
                "mode": "lora",
                "base_checkpoint": base,
                "base_pca": "matched",
                "lora": {"rank": 2, "alpha": 4},
                **model,
            },
            "train": {"epochs": 1},
            "baselines": ["scratch", "finetune"],
        }
    )


def test_matched_basis_carries_each_band_loadings_by_name(base, other):
    ckpt = read_classifier(base)
    basis = ckpt["state_dict"]["reduction.basis"].double()
    out, info = matched_basis(ckpt, other)
    assert out.shape == (len(other["bands"]), TINY_LOLA["components"])
    for j, name in enumerate(other["bands"]):
        if name in FOREIGN:
            assert torch.all(out[j] == 0), name  # no counterpart: ignored
        else:
            torch.testing.assert_close(out[j], basis[ckpt["bands"].index(name)])
    assert info["ignored_scene_bands"] == FOREIGN
    assert info["unmatched_base_bands"] == DROPPED
    assert info["matched"] == 204 - len(DROPPED)
    rows = [ckpt["bands"].index(b) for b in DROPPED]
    lost = basis[rows].pow(2).sum(0)
    assert info["lost_share"] == pytest.approx(float(lost.max()))
    explained = ckpt["state_dict"]["reduction.explained"].double()
    weighted = float((lost * explained).sum() / explained.sum())
    assert info["lost_variance_share"] == pytest.approx(weighted)
    assert 0 < info["lost_variance_share"] < info["lost_share"]
    # renamed bands are matched by wavelength, within the tolerance only
    renamed = dict(other, bands=tuple(f"b{i}" for i in range(len(other["bands"]))))
    out2, info2 = matched_basis(ckpt, renamed)
    torch.testing.assert_close(out2, out)
    assert info2["ignored_scene_bands"] == ["b199", "b200"]
    far = dict(renamed, wavelengths=renamed["wavelengths"] + 5000.0)  # no band near
    with pytest.raises(BandMatchError, match="none of this scene's 201 bands matches"):
        matched_basis(ckpt, far)
    # the same names at other wavelengths are other bands (another sensor's numbering)
    shifted = dict(other, wavelengths=other["wavelengths"] + 20.0)
    with pytest.raises(BandMatchError, match=r"more than 5 nm apart.*C223 \(2509.11 nm here"):
        matched_basis(ckpt, shifted)
    # made-up names of a cube without known wavelengths are not matched at all
    with pytest.raises(BandMatchError, match="this scene has no known wavelengths"):
        matched_basis(ckpt, dict(other, wavelengths_known=False))


def test_a_kept_basis_fits_only_the_mean_and_scale(salinas_a):
    pixels = salinas_a["image"].flatten(1).T.double()
    fitted = SpectralReduction(204, 6).fit(pixels[::3])
    kept = SpectralReduction(204, 6)
    kept.basis.copy_(fitted.basis)
    kept.fit(pixels[::3], keep_basis=True)
    for name in ("mean", "basis", "scale", "explained"):
        torch.testing.assert_close(getattr(kept, name), getattr(fitted, name))
    kept.fit(pixels[1::3] * 1.5, keep_basis=True)  # other pixels, another gain
    torch.testing.assert_close(kept.basis, fitted.basis)
    torch.testing.assert_close(kept.mean, pixels[1::3].mean(0).float() * 1.5)
    # a matched basis has rows of zeros (bands without a counterpart): still a fraction
    holes = fitted.basis.clone()
    holes[::4] = 0
    kept.basis.copy_(holes)
    kept.fit(pixels[1::3], keep_basis=True)
    torch.testing.assert_close(kept.basis, holes)
    assert 0.5 < float(kept.explained.sum()) < float(fitted.explained.sum()) <= 1.0


def test_lora_finetune_and_scratch_on_one_split_of_another_band_list(base, other, tmp_path):
    recipe = _transfer(base)
    # the base's own cube: lora and finetune (not scratch) warn that it saw these pixels
    seen = read_classifier(base)["source_files"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results, classes = run_protocol(
            recipe,
            0.05,
            [0],
            progress=False,
            scene=dict(other, source_files=seen),
            save_dir=tmp_path,
            echo=print,
        )
    assert sum("was trained on this scene" in str(w.message) for w in caught) == 2
    by = {r.method: r for r in results}
    assert [Path(r.details["checkpoint"]).name for r in results] == [
        "lola_lora_random_f0.05_seed0.pt",
        "scratch_full_random_f0.05_seed0.pt",
        "finetune_finetune_random_f0.05_seed0.pt",
    ]
    assert [(r.method, r.mode) for r in results] == [
        ("lola", "lora"),
        ("scratch", "full"),
        ("finetune", "finetune"),
    ]
    assert by["lola"].counts == by["scratch"].counts == by["finetune"].counts
    total = by["scratch"].total_params
    assert by["scratch"].trainable_params == by["finetune"].trainable_params == total
    assert by["finetune"].total_params == total
    assert by["lola"].trainable_params < 0.5 * by["lola"].total_params
    for method in ("lola", "finetune"):
        match = by[method].details["pca_match"]
        assert match["ignored_scene_bands"] == FOREIGN
    assert "pca_match" not in by["scratch"].details

    # the adapted model is one file: its PCA holds the matched components, and reloaded it
    # classifies the test pixels as it did in the run
    model, ckpt = load_classifier(by["lola"].details["checkpoint"])
    expected, _ = matched_basis(read_classifier(base), other)
    torch.testing.assert_close(model.reduction.basis, expected.float())
    assert ckpt["recipe"]["model"]["base_pca"] == "matched"
    mask = other["mask"].numpy()
    from geofm.tasks.pixel_protocol import make_split

    coords, _ = make_split(mask, "random", 0.05, 0.05, recipe.radius, seed=0)
    preds, _ = classify_pixels(model, other["image"], coords["test"], other["valid"])
    assert by["lola"].metrics.count == len(preds)
    t = coords["test"]
    acc = float(np.mean(preds == mask[t[:, 0], t[:, 1]]))
    assert acc == pytest.approx(by["lola"].metrics.oa, abs=1e-6)
    for method, lora in (("scratch", None), ("finetune", None)):
        model, ckpt = load_classifier(by[method].details["checkpoint"])
        assert ckpt["lora"] is lora and ckpt["recipe"]["model"]["mode"] == by[method].mode
        preds, _ = classify_pixels(model, other["image"], t, other["valid"])
        acc = float(np.mean(preds == mask[t[:, 0], t[:, 1]]))
        assert acc == pytest.approx(by[method].metrics.oa, abs=1e-6)
    scratch = load_classifier(by["scratch"].details["checkpoint"])[1]["recipe"]["model"]
    assert scratch["base_checkpoint"] is None and scratch["base_pca"] == "refit"

    # results recorded before model.base_pca and train.precision existed resume as the
    # same (refit, float32) recipe
    refit = _transfer(base, base_pca="refit")
    write_results(tmp_path / "r.csv", results, classes, refit)
    entries = json.loads((tmp_path / "r.json").read_text())
    for e in entries:
        del e["recipe"]["model"]["base_pca"], e["recipe"]["model"]["lora"]["train"]
        del e["recipe"]["train"]["precision"]
    (tmp_path / "r.json").write_text(json.dumps(entries))
    assert len(read_results(tmp_path / "r.json", refit, 0.05)) == 3
    with pytest.raises(
        ValueError, match=r"another recipe \(model.base_pca: 'refit' -> 'matched'\)"
    ):
        read_results(tmp_path / "r.json", recipe, 0.05)


def test_finetune_starts_from_the_base_and_trains_everything(base, other):
    recipe = transfer_recipe(_transfer(base), "finetune")
    model, record = build_classifier(recipe, len(other["bands"]), 6, other)
    state = read_classifier(base)["state_dict"]
    torch.testing.assert_close(model.frontend[0].weight, state["frontend.0.weight"])
    torch.testing.assert_close(model.head.weight, state["head.weight"])  # same 6 classes
    assert all(p.requires_grad for p in model.parameters())
    assert record["lora"] is None and record["pca_match"]["matched"] == 199
    lora, _ = build_classifier(_transfer(base), len(other["bands"]), 6, other)
    frozen = [n for n, p in lora.named_parameters() if not p.requires_grad]
    assert "frontend.0.weight" in frozen and "head.weight" not in frozen
    assert "patch_embed.0.weight" in frozen
    # the convolutional stem can be trained in full beside the LoRA factors
    settings = {"rank": 2, "alpha": 4, "train": ["frontend", "patch_embed"]}
    stem, record = build_classifier(_transfer(base, lora=settings), len(other["bands"]), 6, other)
    trained = {n for n, p in stem.named_parameters() if p.requires_grad}
    assert {"frontend.0.weight", "frontend.1.weight", "patch_embed.0.weight"} <= trained
    assert "stages.0.0.attn.qkv.weight" not in trained and "stages.0.0.attn.qkv.lora_A" in trained
    assert record["lora"]["train"] == ["frontend", "patch_embed"]
    refit, record = build_classifier(
        _transfer(base, base_pca="refit"), len(other["bands"]), 6, other
    )
    assert "pca_match" not in record and not bool(refit.reduction.fitted)
    assert not torch.equal(refit.reduction.basis, model.reduction.basis)


def test_transfer_recipe_errors(base):
    with pytest.raises(RecipeError, match="finetune mode starts from a base model"):
        load_recipe({"scene": SALINAS_A, "model": {"mode": "finetune"}})
    with pytest.raises(RecipeError, match="'scratch' baseline compares against a base"):
        load_recipe({"scene": SALINAS_A, "baselines": ["scratch"]})
    with pytest.raises(RecipeError, match="'finetune' baseline is the recipe's own model"):
        load_recipe(
            {
                "scene": SALINAS_A,
                "model": {"mode": "finetune", "base_checkpoint": base},
                "baselines": ["finetune"],
            }
        )
    with pytest.raises(RecipeError, match="'svm' is not a transfer baseline"):
        transfer_recipe(_transfer(base), "svm")
    with pytest.raises(RecipeError, match="mode full has no base"):
        load_recipe({"scene": SALINAS_A, "model": {"base_pca": "matched"}})


def test_classify_pixels_refuses_a_transfer_method_without_a_base(capsys):
    from geofm.cli import main

    config = str(Path(__file__).resolve().parents[2] / "configs/classify/lola_salinas_a.yaml")
    assert main(["classify-pixels", "--config", config, "--methods", "scratch"]) == 2
    assert "'scratch' baseline compares against a base model" in capsys.readouterr().err


def test_classify_pixels_saves_models_of_a_per_class_split(tmp_path, capsys):
    """--train-per-class gives the protocol a plain int (the number is saved in the model
    file; jsonargparse's PositiveInt was refused there, after the first model trained)."""
    import yaml

    from geofm.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({"scene": SALINAS_A, "model": {"kwargs": TINY_LOLA}, "train": {"epochs": 1}})
    )
    out = tmp_path / "r.csv"
    argv = ["classify-pixels", "--config", str(config), "--train-per-class", "5", "--seeds", "0"]
    assert main([*argv, "--output", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    model = tmp_path / "models" / "lola_full_random_f5_seed0.pt"
    ckpt = read_classifier(model)
    assert ckpt["train_fraction"] == 5 and type(ckpt["train_fraction"]) is int
