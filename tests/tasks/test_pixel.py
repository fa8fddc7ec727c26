"""Pixel classification: metrics against scikit-learn, the LoRA scale schedule, splits, the
protocol end to end on the bundled Salinas-A, prediction maps and bad input."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_LOLA

from geofm.data.cards import data_dir
from geofm.data.datasets import PixelPatchDataset, read_scene
from geofm.data.splits import find_leaks
from geofm.models import create_model
from geofm.tasks.callbacks import CyclicLoRAScale, cosine_restarts
from geofm.tasks.metrics import classification_metrics, confusion_matrix
from geofm.tasks.pixel import ReducedWindows, augment_windows, classify_pixels, drop_context
from geofm.tasks.pixel_models import load_classifier
from geofm.tasks.pixel_protocol import make_split, run_protocol
from geofm.tasks.pixel_recipe import RecipeError, load_recipe
from geofm.tasks.pixel_results import read_rows, summarise, write_results

SALINAS_A = {
    "card": "salinas_a",
    "cube": "{data}/samples/salinas_a/SalinasA_corrected.hdr",
    "gt": "{data}/samples/salinas_a/SalinasA_gt.mat",
}


@pytest.fixture(scope="module")
def salinas_a():
    root = data_dir() / "samples" / "salinas_a"
    return read_scene(root / "SalinasA_corrected.hdr", root / "SalinasA_gt.mat", "salinas_a")


# --- metrics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed):
    from sklearn import metrics as skm

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, 500)
    pred = np.where(rng.random(500) < 0.7, y, rng.integers(0, 6, 500))
    y[y == 5] = 4  # class 5 absent from the reference
    m = classification_metrics(y, pred, 6)
    np.testing.assert_array_equal(m.confusion, skm.confusion_matrix(y, pred, labels=range(6)))
    assert m.oa == pytest.approx(skm.accuracy_score(y, pred))
    assert m.kappa == pytest.approx(skm.cohen_kappa_score(y, pred))
    with pytest.warns(UserWarning):  # sklearn warns about the absent class
        balanced = skm.balanced_accuracy_score(y, pred)
    assert m.aa == pytest.approx(balanced)
    recall = skm.recall_score(y, pred, labels=range(5), average=None)
    np.testing.assert_allclose(m.per_class[:5], recall)
    assert math.isnan(m.per_class[5])


def test_metric_errors():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="2 reference labels but 1"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix([0.5], [0], 3)


# --- the LoRA scale schedule -------------------------------------------------------------------


def test_cosine_restarts_formula():
    # period 4, doubling: cycles [0, 4), [4, 12), [12, 28)
    for step, t, length in [(0, 0, 4), (3, 3, 4), (4, 0, 8), (11, 7, 8), (12, 0, 16), (20, 8, 16)]:
        expected = 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * t / length))
        assert cosine_restarts(step, 4, 2, 0.2, 1.0) == pytest.approx(expected)
    assert cosine_restarts(5, 5, 1, 0.0, 1.0) == 1.0  # warm restart
    with pytest.raises(ValueError):
        cosine_restarts(0, 0)


def test_cyclic_lora_scale_callback_follows_the_formula(salinas_a, tmp_path):
    """A short lora-mode fit: the multiplier of every LoRA layer follows the schedule step by
    step, and evaluation runs at the full strength."""
    import lightning.pytorch as pl

    from geofm.models.lora import lora_layers
    from geofm.tasks.pixel import PixelClassificationTask

    model = create_model("lola_specvit", bands=204, num_classes=6, **TINY_LOLA)
    image = salinas_a["image"].float()
    model.fit_reduction(image.reshape(204, -1).T[::7])
    model.to_lora(rank=2)
    coords = np.argwhere(salinas_a["mask"].numpy() != 255)[::40]
    labels = salinas_a["mask"].numpy()[coords[:, 0], coords[:, 1]]
    with torch.no_grad():
        scores = model.reduction(image[None])[0]
    ds = ReducedWindows(scores, coords, labels, 7)
    loader = torch.utils.data.DataLoader(ds, batch_size=32)
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append({layer.multiplier for _, layer in lora_layers(pl_module)})

        def on_validation_start(self, trainer, pl_module):
            seen.append(("val", {layer.multiplier for _, layer in lora_layers(pl_module)}))

    schedule = CyclicLoRAScale(period_epochs=1.0, period_mult=2, low=0.25, high=1.0)
    task = PixelClassificationTask(model, 6, reduced_inputs=True)
    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[schedule, Spy()],
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, loader, torch.utils.data.DataLoader(ds, batch_size=64))
    per_epoch = len(loader)
    steps = [s for s, _ in schedule.history]
    assert steps == list(range(3 * per_epoch))
    for step, value in schedule.history:
        assert value == pytest.approx(cosine_restarts(step, per_epoch, 2, 0.25, 1.0))
    train_sets = [s for s in seen if not isinstance(s, tuple)]
    assert [next(iter(s)) for s in train_sets] == [v for _, v in schedule.history]
    assert all(len(s) == 1 for s in train_sets)  # every layer gets the same value
    assert all(s[1] == {1.0} for s in seen if isinstance(s, tuple))
    assert len({v for _, v in schedule.history}) > 3


# --- windows and augmentation ------------------------------------------------------------------


def test_augmentations_keep_the_centre():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 7, 7)
    out, _ = augment_windows(x, None)
    torch.testing.assert_close(out[:, :, 3, 3], x[:, :, 3, 3])
    assert not torch.equal(out, x)
    # every output window is one of the 8 symmetries of its input
    for i in range(8):
        variants = [
            torch.rot90(v, k, dims=(-2, -1)) for v in (x[i], x[i].flip(-1)) for k in range(4)
        ]
        assert any(torch.equal(out[i], v) for v in variants)
    hidden = drop_context(x, 1.0)
    torch.testing.assert_close(hidden[:, :, 3, 3], x[:, :, 3, 3])
    assert (hidden[:, :, 0, 0] == 0).all()  # the border always goes at p = 1
    assert torch.equal(drop_context(x, 0.0), x)


def test_reduced_windows_match_cropped_windows(salinas_a):
    """Reduce-then-crop (training, prediction) equals crop-then-reduce (the model's raw path),
    at the scene corner and next to pixels without data."""
    torch.manual_seed(0)
    model = create_model("lola_specvit", bands=204, num_classes=6, **TINY_LOLA).eval()
    scene = dict(salinas_a)
    image = scene["image"].float()
    valid = torch.ones(image.shape[1:], dtype=torch.bool)
    valid[40:43, 48:51] = False  # a hole beside (41, 46)
    scene["valid"] = valid
    model.fit_reduction(image.reshape(204, -1).T[::5])
    coords = np.array([[0, 0], [41, 46], [42, 44], [60, 20]])
    assert (salinas_a["mask"].numpy()[coords[:, 0], coords[:, 1]] != 255).all()
    raw = PixelPatchDataset(scene, coords, radius=3)
    windows = torch.stack([raw[i]["image"] for i in range(len(raw))])
    valid = torch.stack([raw[i]["valid"] for i in range(len(raw))])
    with torch.no_grad():
        assert not valid[1].all() and not valid[0].all()  # the hole and the corner
        expected = model(windows, valid).argmax(1).numpy()
        labels, probs = classify_pixels(model, image, coords, scene["valid"], probabilities=True)
        scores = model.reduction(image[None], scene["valid"][None])[0]
        reduced = torch.stack(
            [ReducedWindows(scores, coords, None, 7)[i]["image"] for i in range(len(coords))]
        )
        torch.testing.assert_close(reduced, model.reduction(windows, valid), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(labels, expected)
    assert probs.shape == (len(coords), 6)


# --- splits ----------------------------------------------------------------------------------


def test_disjoint_split_is_leak_free_and_random_split_stratified(salinas_a):
    mask = salinas_a["mask"].numpy()
    coords, info = make_split(mask, "disjoint", 0.1, 0.05, radius=4, seed=0, block_size=8)
    assert find_leaks(coords["train"], coords["test"], 4).size == 0
    assert find_leaks(coords["train"], coords["val"], 4).size == 0
    assert find_leaks(coords["val"], coords["test"], 4).size == 0
    assert info["dropped_by_buffer"]["test"] > 0
    coords, info = make_split(mask, "random", 0.05, 0.05, radius=4, seed=0)
    totals = np.bincount(mask[mask != 255])
    np.testing.assert_allclose(np.array(info["counts"]["train"]) / totals, 0.05, atol=0.02)
    seen = np.concatenate([coords[p] for p in ("train", "val", "test")])
    assert len(np.unique(seen, axis=0)) == len(seen) == totals.sum()


def test_random_split_by_pixels_per_class(salinas_a):
    mask = salinas_a["mask"].numpy()
    coords, info = make_split(mask, "random", 20, 0.05, radius=3, seed=0)
    assert info["counts"]["train"] == [20] * 6
    with pytest.raises(ValueError, match="takes a train fraction"):
        make_split(mask, "disjoint", 20, 0.05, radius=3, seed=0)


def test_split_names_the_class_that_is_too_small():
    mask = np.full((20, 20), 255, dtype=np.int64)
    mask[:10, :10] = 0
    mask[15, 15] = 1  # one pixel of class 1
    with pytest.raises(ValueError, match=r"class 1: 1 train, 0 test pixels"):
        make_split(mask, "random", 0.5, 0.0, radius=1, seed=0)


# --- the protocol end to end -------------------------------------------------------------------


def _recipe(**train):
    return load_recipe(
        {
            "scene": SALINAS_A,
            "split": {"val_fraction": 0.05, "block_size": 8},
            "model": {"kwargs": TINY_LOLA},
            "train": {"epochs": 2, "batch_size": 64, **train},
            "baselines": ["svm"],
        }
    )


def test_protocol_end_to_end_on_salinas_a(tmp_path, salinas_a):
    recipe = _recipe()
    results, classes = run_protocol(
        recipe,
        0.05,
        [0, 1],
        progress=False,
        save_dir=tmp_path / "models",
        echo=lambda s: None,
    )
    assert [(r.method, r.seed) for r in results] == [
        ("lola", 0),
        ("svm", 0),
        ("lola", 1),
        ("svm", 1),
    ]
    assert classes[0] == "Brocoli_green_weeds_1"
    svm = [r for r in results if r.method == "svm"]
    assert all(r.metrics.oa > 0.9 for r in svm)  # real spectra, real separability
    lola = results[0]
    assert lola.trainable_params == lola.total_params > 0
    assert lola.metrics.count == sum(lola.counts["test"])
    rows = write_results(tmp_path / "r.csv", results, classes)
    assert [r["seed"] for r in rows] == [0, 0, 1, 1, "mean", "std", "mean", "std"]
    mean = rows[4]
    assert mean["oa"] == pytest.approx(np.mean([r.metrics.oa for r in results[::2]]), abs=1e-6)
    text = (tmp_path / "r.csv").read_text().splitlines()
    assert text[0].startswith("method,mode,split,train_fraction,seed,oa,aa,kappa,acc_Brocoli")
    assert (tmp_path / "r.json").is_file()
    back = read_rows(tmp_path / "r.csv")  # what the report scripts read
    assert [r["seed"] for r in back] == ["0", "0", "1", "1", "mean", "std", "mean", "std"]
    assert float(back[4]["oa"]) == pytest.approx(mean["oa"], abs=1e-6)
    assert read_rows(tmp_path / "none.csv", missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_rows(tmp_path / "none.csv")

    # the saved model, reloaded, gives the same test predictions (the split is rebuilt from
    # its seed)
    ckpt_path = Path(lola.details["checkpoint"])
    model, ckpt = load_classifier(ckpt_path)
    assert ckpt["classes"] == classes and ckpt["split"] == "random"
    mask = salinas_a["mask"].numpy()
    coords, _ = make_split(mask, "random", 0.05, 0.05, recipe.radius, seed=0)
    test = coords["test"]
    preds, _ = classify_pixels(model, salinas_a["image"], test)
    again = classification_metrics(mask[test[:, 0], test[:, 1]], preds, 6)
    np.testing.assert_array_equal(again.confusion, lola.metrics.confusion)


def test_lora_mode_from_a_base_checkpoint(tmp_path):
    base_results, _ = run_protocol(
        _recipe(),
        0.05,
        [0],
        methods=["lola"],
        progress=False,
        save_dir=tmp_path,
        echo=lambda s: None,
    )
    base = base_results[0].details["checkpoint"]
    recipe = load_recipe(
        {
            "scene": SALINAS_A,
            "model": {
                "mode": "lora",
                "base_checkpoint": base,
                "lora": {"rank": 2, "alpha": 4},
                "lora_schedule": {"period_epochs": 1},
            },
            "train": {"epochs": 1},
        }
    )
    with pytest.warns(UserWarning, match="trained on this scene"):
        results, _ = run_protocol(
            recipe,
            0.05,
            [1],
            progress=False,
            save_dir=tmp_path / "lora",
            echo=lambda s: None,
        )
    r = results[0]
    assert r.mode == "lora" and r.trainable_params < 0.5 * r.total_params
    unmerged, ckpt = load_classifier(r.details["checkpoint"], merge=False)
    merged, _ = load_classifier(r.details["checkpoint"])
    assert ckpt["lora"]["rank"] == 2 and ckpt["lora"]["eval_multiplier"] == 1.0
    from geofm.models.lora import lora_layers

    assert lora_layers(unmerged) and all(layer.merged for _, layer in lora_layers(merged))
    x = torch.randn(3, 204, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), unmerged(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="architecture comes from the base"):
        load_recipe(
            {
                "scene": SALINAS_A,
                "model": {
                    "mode": "lora",
                    "base_checkpoint": base,
                    "kwargs": {**TINY_LOLA, "components": 10},
                },
            }
        )


def test_base_checkpoint_with_other_shapes_is_refused(tmp_path):
    from geofm.tasks.pixel_models import build_classifier

    results, _ = run_protocol(
        _recipe(),
        0.05,
        [0],
        methods=["lola"],
        progress=False,
        save_dir=tmp_path,
        echo=lambda s: None,
    )
    path = Path(results[0].details["checkpoint"])
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["stages.0.0.attn.qkv.weight"] = torch.zeros(5, 5)
    torch.save(ckpt, path)
    recipe = load_recipe(
        {"scene": SALINAS_A, "model": {"mode": "lora", "base_checkpoint": str(path)}}
    )
    with pytest.raises(ValueError, match=r"stages.0.0.attn.qkv.weight: checkpoint \(5, 5\)"):
        build_classifier(recipe, 204, 6)


def test_recipe_errors(tmp_path, salinas_a):
    with pytest.raises(ValueError, match="'train' does not accept option 'epoch'"):
        load_recipe({"scene": SALINAS_A, "train": {"epoch": 3}})
    with pytest.raises(ValueError, match=r'(?s)"train.epochs".*int.*many'):
        load_recipe({"scene": SALINAS_A, "train": {"epochs": "many"}})
    with pytest.raises(ValueError, match=r"(?s)train.precision.*'32-true', 'bf16-mixed'.*bf16"):
        load_recipe({"scene": SALINAS_A, "train": {"precision": "bf16"}})
    with pytest.raises(ValueError, match="'model' does not accept option 'nme'"):
        load_recipe({"scene": SALINAS_A, "model": {"nme": "x"}})
    # numbers YAML reads as text (1e-3 without a dot) are numbers of the key's type
    assert load_recipe({"scene": SALINAS_A, "train": {"lr": "1e-3"}}).train["lr"] == 1e-3
    with pytest.raises(ValueError, match="base_checkpoint"):
        load_recipe({"scene": SALINAS_A, "model": {"mode": "lora"}})
    with pytest.raises(ValueError, match="odd"):
        load_recipe({"scene": SALINAS_A, "model": {"kwargs": {"patch": 8}}})
    big = _recipe()
    big.model["kwargs"] = {**TINY_LOLA, "patch": 85}
    with pytest.raises(ValueError, match="larger than the 83 x 86 scene"):
        run_protocol(big, 0.05, [0], progress=False, scene=dict(salinas_a), echo=lambda s: None)


def test_mean_interval_is_students_t_over_the_values():
    from geofm.tasks.pixel_results import mean_interval

    mean, low, high = mean_interval([1.0, 2.0, 6.0])  # mean 3, sample sd sqrt(7)
    half = 4.302653 * np.sqrt(7) / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert (mean, low, high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))
    narrower = mean_interval([1.0, 2.0, 6.0], level=0.5)
    assert narrower[2] - narrower[1] < high - low
    assert mean_interval([4.0]) == (4.0, None, None)  # no spread from one value
    with pytest.raises(ValueError, match="non-empty"):
        mean_interval([])


def test_summarise_std_is_sample_std():
    from geofm.tasks.metrics import ClassificationMetrics
    from geofm.tasks.pixel_results import SeedResult

    def res(seed, oa, per_class=None):
        per_class = np.array([oa]) if per_class is None else np.asarray(per_class)
        m = ClassificationMetrics(oa, oa, oa, per_class, np.eye(len(per_class), dtype=np.int64))
        return SeedResult(
            "svm",
            "rbf",
            "random",
            0.05,
            seed,
            m,
            None,
            None,
            1.0,
            {"train": [1], "val": [1], "test": [1]},
        )

    rows = summarise([res(0, 0.9), res(1, 0.8), res(2, 0.7)], ["a"])
    assert rows[3]["oa"] == pytest.approx(0.8) and rows[4]["oa"] == pytest.approx(0.1)
    # a class the split left out on every seed is nan in the mean too, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = summarise([res(0, 0.9, [0.9, np.nan]), res(1, 0.7, [0.7, np.nan])], ["a", "b"])
    assert rows[2]["acc_a"] == pytest.approx(0.8) and math.isnan(rows[2]["acc_b"])
    assert rows[3]["acc_b"] is None


# --- SSFTT beside the recipe's model -------------------------------------------------------------


def test_ssftt_baseline_trains_on_the_same_split_with_its_own_settings(
    tmp_path, salinas_a, monkeypatch
):
    from geofm.data.splits import find_leaks
    from geofm.tasks import pixel_recipe
    from geofm.tasks.pixel_protocol import checkpoint_name, split_radius
    from geofm.tasks.pixel_recipe import baseline_recipe

    monkeypatch.setitem(pixel_recipe.BASELINE_RECIPES["ssftt"]["train"], "epochs", 2)
    recipe = load_recipe(
        {
            "scene": SALINAS_A,
            "split": {"kind": "disjoint", "val_fraction": 0.05, "block_size": 8},
            "model": {"kwargs": TINY_LOLA},
            "train": {"epochs": 1, "accelerator": "cpu", "precision": "bf16-mixed"},
            "baselines": ["svm", "ssftt"],
        }
    )
    own = baseline_recipe(recipe, "ssftt")
    assert own.scene == recipe.scene and own.split == recipe.split
    assert own.model["name"] == "ssftt" and own.patch == 13 and own.model["pca"] == "transductive"
    assert own.train["min_lr_factor"] == 1.0 and own.train["accelerator"] == "cpu"
    assert own.train["precision"] == "32-true"  # as published, whatever the recipe's
    # the buffer covers SSFTT's 13 x 13 windows, whichever methods run
    assert split_radius(recipe) == split_radius(recipe, ["lola"]) == 6
    assert split_radius(_recipe()) == 3 and split_radius(_recipe(), ["ssftt"]) == 6

    results, _ = run_protocol(
        recipe,
        0.05,
        [0],
        methods=["lola", "ssftt"],
        progress=False,
        save_dir=tmp_path,
        scene=dict(salinas_a),
        echo=lambda s: None,
    )
    lola, ssftt = results
    assert (lola.method, ssftt.method, ssftt.mode) == ("lola", "ssftt", "full")
    assert lola.counts == ssftt.counts  # one split for both
    assert ssftt.trainable_params == ssftt.total_params > 50_000
    mask = salinas_a["mask"].numpy()
    coords, _ = make_split(mask, "disjoint", 0.05, 0.05, 6, seed=0, block_size=8)
    assert find_leaks(coords["train"], coords["test"], 6).size == 0
    assert {
        p: np.bincount(mask[c[:, 0], c[:, 1]], minlength=6).tolist() for p, c in coords.items()
    } == lola.counts
    path = Path(ssftt.details["checkpoint"])
    assert (
        path.name
        == checkpoint_name(recipe, 0.05, 0, "ssftt")
        == "ssftt_full_disjoint_f0.05_seed0.pt"
    )
    model, ckpt = load_classifier(path)
    assert ckpt["model"] == "ssftt" and ckpt["recipe"]["model"]["name"] == "ssftt"
    test = coords["test"]
    preds, _ = classify_pixels(model, salinas_a["image"], test)
    again = classification_metrics(mask[test[:, 0], test[:, 1]], preds, 6)
    np.testing.assert_array_equal(again.confusion, ssftt.metrics.confusion)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_seed_reproduces_its_run_exactly(salinas_a, precision, monkeypatch):
    """A fresh run of the same recipe and seed gives the same split, weights and test
    predictions: the results in docs/pixel_classification.md can be re-run. With
    ``bf16-mixed`` the training steps run under bfloat16 autocast."""
    from geofm.tasks.pixel import PixelClassificationTask
    from geofm.tasks.pixel_protocol import run_seed

    autocast = []
    step = PixelClassificationTask.training_step

    def watched(self, batch, batch_idx):
        autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(PixelClassificationTask, "training_step", watched)
    recipe = _recipe(  # the CPU's autocast, which the watch reads, on any machine
        epochs=2,
        augment=True,
        context_dropout=0.5,
        brightness=0.1,
        precision=precision,
        accelerator="cpu",
    )
    runs = [
        run_seed(recipe, dict(salinas_a), 0.05, 3, ["lola"], 6, progress=False)[0] for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].metrics.confusion, runs[1].metrics.confusion)
    assert runs[0].details["best_val_oa"] == runs[1].details["best_val_oa"]
    bf16 = precision == "bf16-mixed"
    assert autocast and {on for on, _ in autocast} == {bf16}
    assert not bf16 or {dtype for _, dtype in autocast} == {torch.bfloat16}


def test_bf16_on_a_cpu_without_bfloat16_arithmetic_warns_with_the_fix(salinas_a, monkeypatch):
    """Emulated bfloat16 is many times slower than float32: the run says so and names
    ``--train.precision 32-true``; a CPU with bfloat16 flags, float32, or a machine whose
    CPU flags cannot be read train without a word."""
    import warnings

    import geofm.tasks.pixel_protocol as protocol

    cpu = torch.device("cpu")
    monkeypatch.setattr(protocol, "cpu_bf16_flags", lambda: [])
    with pytest.warns(UserWarning, match=r"without bfloat16 arithmetic.*--train.precision 32-true"):
        protocol.warn_if_bf16_is_emulated("bf16-mixed", cpu)
    with pytest.warns(UserWarning, match="without bfloat16 arithmetic"):  # from a real run
        protocol.run_seed(
            _recipe(epochs=1, precision="bf16-mixed", accelerator="cpu"),
            dict(salinas_a),
            0.05,
            0,
            ["lola"],
            6,
            progress=False,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        protocol.warn_if_bf16_is_emulated("32-true", cpu)
        protocol.warn_if_bf16_is_emulated("bf16-mixed", torch.device("cuda"))
        for flags in (["avx512_bf16"], None):
            monkeypatch.setattr(protocol, "cpu_bf16_flags", lambda flags=flags: flags)
            protocol.warn_if_bf16_is_emulated("bf16-mixed", cpu)


def test_ema_epochs_trains_the_recipes_model_with_a_weight_average(salinas_a, monkeypatch):
    """``train.ema_epochs`` puts a WeightAverage over that many epochs into the recipe
    model's training; 0 (the default, and SSFTT's as published) leaves it out, and a
    negative span is refused when the recipe is read."""
    from geofm.tasks.callbacks import WeightAverage
    from geofm.tasks.pixel_protocol import run_seed
    from geofm.tasks.pixel_recipe import baseline_recipe

    spans = []
    start = WeightAverage.on_train_start

    def watched(self, trainer, pl_module):
        spans.append((self.epochs, trainer.num_training_batches))
        return start(self, trainer, pl_module)

    monkeypatch.setattr(WeightAverage, "on_train_start", watched)
    for ema in (2.0, 0.0):
        run_seed(
            _recipe(epochs=1, ema_epochs=ema), dict(salinas_a), 0.05, 0, ["lola"], 6, progress=False
        )
    assert spans == [(2.0, 4)]  # 268 training windows: 4 batches of 64, the rest dropped
    assert baseline_recipe(_recipe(ema_epochs=2.0), "ssftt").train["ema_epochs"] == 0.0
    with pytest.raises(RecipeError, match="train.ema_epochs is the span.*got -1.0"):
        _recipe(ema_epochs=-1.0)


def test_stop_epoch_trains_the_first_epochs_of_the_longer_schedule(salinas_a, monkeypatch):
    """``train.stop_epoch: 2`` of ``epochs: 4`` ends with the weights the 4-epoch run has
    after its second epoch, at every step at the same learning rate (the schedule spans
    all 4); a 2-epoch run's schedule is another. Out-of-range values are refused."""
    import copy

    from geofm.tasks.callbacks import BestWeights
    from geofm.tasks.pixel import PixelClassificationTask
    from geofm.tasks.pixel_protocol import _seed_split, _train_window_model

    rates: list[float] = []
    states: list[dict[str, torch.Tensor]] = []
    step, validated = PixelClassificationTask.training_step, BestWeights.on_validation_end

    def watched_step(self, batch, batch_idx):
        rates.append(self.optimizers().param_groups[0]["lr"])
        return step(self, batch, batch_idx)

    def watched_end(self, trainer, pl_module):
        states.append(copy.deepcopy(pl_module.model.state_dict()))
        return validated(self, trainer, pl_module)

    monkeypatch.setattr(PixelClassificationTask, "training_step", watched_step)
    monkeypatch.setattr(BestWeights, "on_validation_end", watched_end)
    coords, _ = _seed_split(_recipe(), salinas_a, 0.05, 0, ["lola"], None)
    runs = {}
    for name, train in {
        "full": {"epochs": 4},
        "stopped": {"epochs": 4, "stop_epoch": 2},
        "short": {"epochs": 2},
    }.items():
        rates.clear()
        states.clear()
        model, _, _, details = _train_window_model(  # keep_val: validated every epoch
            _recipe(**train), dict(salinas_a), coords, 6, 0, False, None, False, keep_val=True
        )
        runs[name] = (list(rates), list(states), model.state_dict(), details)
    full, stopped, short = runs["full"], runs["stopped"], runs["short"]
    assert len(stopped[0]) == len(full[0]) // 2 == 8  # 4 batches of 64 per epoch
    assert stopped[0] == full[0][:8] and short[0] != stopped[0]
    assert stopped[3]["val_history"] == full[3]["val_history"][:2]
    assert (stopped[3]["epochs"], stopped[3]["stop_epoch"]) == (4, 2)
    for key, value in stopped[2].items():  # the weights it ends with: the full run's at epoch 2
        torch.testing.assert_close(value, full[1][1][key], rtol=0, atol=0)
    assert any(not torch.equal(v, full[2][k]) for k, v in stopped[2].items())
    task = PixelClassificationTask(model, 6, schedule_epochs=2)
    task._trainer = type("Fit", (), {"max_epochs": 4})()  # a fit longer than the schedule
    with pytest.raises(ValueError, match=r"schedule_epochs \(2\) is shorter than the fit \(4"):
        task.warmup_steps(16)
    for bad in (0, 5):
        with pytest.raises(
            RecipeError, match=rf"stop_epoch must lie in 1..train.epochs \(4\), got {bad}"
        ):
            _recipe(epochs=4, stop_epoch=bad)


def test_keep_last_ends_with_the_last_epochs_weights(salinas_a, monkeypatch):
    """``train.keep: last`` ends with the weights of the last epoch trained, ``best`` (the
    default, and SSFTT's) with those of the epoch the validation part chose; the results
    say which. Other values are refused when the recipe is read."""
    import copy

    from geofm.tasks.callbacks import BestWeights
    from geofm.tasks.pixel_protocol import _seed_split, _train_window_model
    from geofm.tasks.pixel_recipe import baseline_recipe

    states: list[dict[str, torch.Tensor]] = []
    validated = BestWeights.on_validation_end

    def watched(self, trainer, pl_module):
        states.append(copy.deepcopy(pl_module.model.state_dict()))
        return validated(self, trainer, pl_module)

    monkeypatch.setattr(BestWeights, "on_validation_end", watched)
    coords, _ = _seed_split(_recipe(), salinas_a, 0.05, 0, ["lola"], None)
    ends = {}
    for keep in ("last", "best"):
        states.clear()
        model, _, _, details = _train_window_model(
            # no warm-up and a high rate: its third epoch scores below its second here
            _recipe(epochs=4, stop_epoch=3, warmup_epochs=0.0, lr=1e-2, keep=keep),
            dict(salinas_a),
            coords,
            6,
            0,
            False,
            None,
        )
        ends[keep] = (model.state_dict(), list(states), details)
    last, best = ends["last"], ends["best"]
    assert (last[2]["kept"], best[2]["kept"]) == ("last", "best")
    # keeping the last weights, the validation part is scored once, after the last epoch;
    # the training is the same as the run validated every epoch, to the bit
    assert len(last[1]) == 1 and len(best[1]) == 3
    assert last[2]["val_history"] == best[2]["val_history"][-1:]
    for key, value in last[0].items():
        torch.testing.assert_close(value, best[1][-1][key], rtol=0, atol=0)
    chosen = best[2]["best_epoch"]
    assert chosen < 2, f"the test needs a best epoch before the last: {best[2]['val_history']}"
    for key, value in last[0].items():
        torch.testing.assert_close(value, last[1][-1][key], rtol=0, atol=0)
    for key, value in best[0].items():
        torch.testing.assert_close(value, best[1][chosen][key], rtol=0, atol=0)
    assert baseline_recipe(_recipe(keep="last"), "ssftt").train["keep"] == "best"
    with pytest.raises(RecipeError, match="keep"):
        _recipe(keep="first")


def test_class_weights_weigh_each_class_by_its_count_to_a_power():
    """``n_c ** -power``, the mean weight over the training pixels 1, an absent class 0."""
    from geofm.tasks.pixel import class_weights

    labels = np.array([0, 1, 1, 1, 1, 3, 3, 3, 3, 3])  # counts 1, 4, 0, 5
    torch.testing.assert_close(
        class_weights(labels, 4, 1.0), torch.tensor([10 / 3, 10 / 12, 0.0, 10 / 15])
    )
    torch.testing.assert_close(class_weights(labels, 4, 0.0), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    half = class_weights(torch.as_tensor(labels), 4, 0.5)
    root = torch.tensor([1.0, 0.5, 0.0, 5**-0.5])
    torch.testing.assert_close(half, root * 10 / (root * torch.tensor([1, 4, 0, 5])).sum())
    assert half[0] > half[1] > half[3] > 1 / 3  # rarer classes weigh more
    with pytest.raises(ValueError, match=r"power must lie in \[0, 1\].*got 1.5"):
        class_weights(labels, 4, 1.5)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2, got 0..3"):
        class_weights(labels, 3, 1.0)
    with pytest.raises(ValueError, match="at least one training label"):
        class_weights(np.array([], dtype=int), 3, 1.0)


def test_class_weight_power_weighs_the_training_loss_and_nothing_else(salinas_a, monkeypatch):
    """``train.class_weight_power`` gives the task the weights of the split's training
    labels, which weigh the training cross-entropy (not the validation loss); 0, the
    default and SSFTT's, gives none. Powers outside [0, 1] are refused when read."""
    from geofm.tasks.pixel import PixelClassificationTask, class_weights
    from geofm.tasks.pixel_protocol import _seed_split, _train_window_model
    from geofm.tasks.pixel_recipe import baseline_recipe

    given = []
    init = PixelClassificationTask.__init__

    def watched(self, *args, **kwargs):
        given.append(kwargs.get("class_weights"))
        return init(self, *args, **kwargs)

    monkeypatch.setattr(PixelClassificationTask, "__init__", watched)
    coords, _ = _seed_split(_recipe(), salinas_a, 0.05, 0, ["lola"], None)
    for power in (0.5, 0.0):
        _train_window_model(
            _recipe(epochs=1, class_weight_power=power), dict(salinas_a), coords, 6, 0, False, None
        )
    mask = torch.as_tensor(salinas_a["mask"]).numpy()
    tr = coords["train"]
    torch.testing.assert_close(given[0], class_weights(mask[tr[:, 0], tr[:, 1]], 6, 0.5))
    assert given[1] is None
    assert (
        baseline_recipe(_recipe(class_weight_power=1.0), "ssftt").train["class_weight_power"] == 0.0
    )
    with pytest.raises(RecipeError, match="class_weight_power weighs each class.*got 1.5"):
        _recipe(class_weight_power=1.5)

    # the loss: the weighted mean of the pixels' smoothed cross-entropies; the smoothing
    # spread evenly over the classes as without weights (torch's weight= would not)
    torch.manual_seed(0)
    head = torch.nn.Linear(3, 4)
    model = type(
        "M", (torch.nn.Module,), {"forward": lambda self, x, v=None: head(x[:, :, 0, 0])}
    )()
    weights = torch.tensor([2.0, 0.5, 1.0, 0.0])
    batch = {"image": torch.randn(5, 3, 1, 1), "label": torch.tensor([0, 1, 1, 2, 0])}
    logits = head(batch["image"][:, :, 0, 0])
    losses, val_losses = {}, {}
    for name, w in (("weighted", weights), ("plain", None)):
        task = PixelClassificationTask(model, 4, augment=False, class_weights=w)
        assert "class_weights" not in task.state_dict()  # never saved with the weights
        logged: dict[str, torch.Tensor] = {}
        monkeypatch.setattr(
            task, "log", lambda key, value, logged=logged, **k: logged.update({key: value})
        )
        monkeypatch.setattr(task, "update_confusion", lambda *a, **k: None)
        losses[name] = task.training_step(batch, 0)
        task.validation_step(batch, 0)
        val_losses[name] = logged["val/loss"]
    log_p = torch.log_softmax(logits, dim=-1)
    each = -(0.9 * log_p[torch.arange(5), batch["label"]] + 0.1 * log_p.mean(dim=-1))
    w = weights[batch["label"]]
    torch.testing.assert_close(losses["plain"], each.mean())
    torch.testing.assert_close(losses["weighted"], (w * each).sum() / w.sum())
    assert not torch.allclose(losses["weighted"], losses["plain"])
    torch.testing.assert_close(val_losses["weighted"], val_losses["plain"])
    torch.testing.assert_close(
        val_losses["plain"], torch.nn.functional.cross_entropy(logits, batch["label"])
    )
    with pytest.raises(ValueError, match=r"one weight per class, shape \(4,\); got \(3,\)"):
        PixelClassificationTask(model, 4, class_weights=torch.ones(3))


@pytest.mark.parametrize("split", ["disjoint", "random"])
def test_cross_validation_scores_each_development_pixel_once_and_never_a_test_pixel(
    salinas_a, monkeypatch, split
):
    import geofm.tasks.pixel as pixel
    from geofm.data.splits import cross_validation_folds, find_leaks
    from geofm.tasks.pixel_protocol import _seed_split, cross_validate_seed, validate_seed
    from geofm.tasks.pixel_recipe import merged

    recipe = load_recipe(merged(_recipe().as_dict(), {"split": {"kind": split}}))
    coords, _ = _seed_split(recipe, salinas_a, 0.05, 0, ["lola"], None)
    real, scored, classified = pixel.classify_pixels, [], []

    def spy(model, image, where, *args, **kwargs):
        scored.append(np.asarray(where).copy())
        got = real(model, image, where, *args, **kwargs)
        classified.append(got[0])
        return got

    monkeypatch.setattr(pixel, "classify_pixels", spy)
    got = cross_validate_seed(recipe, dict(salinas_a), 0.05, 0, folds=3, keep_predictions=True)
    assert len(scored) == 3 and [len(s) for s in scored] == got["fold_held_out"]
    # kept: each held-out pixel's class after every epoch, which gives the pooled curve
    assert got["grid"] == ({"block_size": 8, "buffer": 3} if split == "disjoint" else None)
    right = np.zeros(2)
    for s, preds, kept in zip(scored, classified, got["held_out"], strict=True):
        np.testing.assert_array_equal(kept["coords"], s)
        assert kept["predictions"].shape == kept["losses"].shape == (2, len(s))
        # pixel by pixel, the last epoch's record is what the fold's last weights classify
        # (other batches: a near-tie of two logits may flip one pixel)
        assert (kept["predictions"][-1] != preds).sum() <= 1
        right += (kept["predictions"] == kept["truth"]).sum(1)
        assert np.isfinite(kept["losses"]).all() and (kept["losses"] >= 0).all()
    np.testing.assert_allclose(right / len(np.concatenate(scored)), got["curve"], atol=1e-6)
    every = np.concatenate(scored)
    as_set = {tuple(p) for p in every.tolist()}
    assert len(as_set) == len(every)  # each pixel scored once
    development = {tuple(p) for p in np.concatenate([coords["train"], coords["val"]]).tolist()}
    assert as_set <= development and not as_set & {tuple(p) for p in coords["test"].tolist()}
    dev = np.concatenate([coords["train"], coords["val"]])
    mask = salinas_a["mask"].numpy()
    # the folds scored are the ones cross_validation_folds makes on the split's grid and
    # buffer (the split's radius: SVM and LoLA, so LoLA's 3)
    spatial = {"block_size": 8, "buffer": 3} if split == "disjoint" else {}
    folds = cross_validation_folds(mask, dev, 3, 0, **spatial)
    for s, f in zip(scored, folds, strict=True):
        np.testing.assert_array_equal(s, f.held_out)
        assert find_leaks(f.train, f.held_out, 3 if split == "disjoint" else 0).size == 0
    assert got["fold_train"] == [len(f.train) for f in folds]
    if split == "random":
        assert len(every) == len(dev) and got["fold_train"] == [len(dev) - len(s) for s in scored]
        assert got["fold_unseen"] == [[], [], []]  # stratified: every fold trains on each class
    assert got["fold_unseen"] == [
        sorted(set(mask[tuple(f.held_out.T)].tolist()) - set(mask[tuple(f.train.T)].tolist()))
        for f in folds
    ]
    assert len(got["curve"]) == 2 and got["best_epoch"] is None
    # without kept predictions the curve is still every epoch's: it is what a search reads
    plain = cross_validate_seed(recipe, dict(salinas_a), 0.05, 0, folds=3)
    assert plain["curve"] == pytest.approx(got["curve"]) and len(plain["curve"]) == 2
    last = load_recipe(merged(recipe.as_dict(), {"train": {"keep": "last"}}))
    assert len(validate_seed(last, dict(salinas_a), 0.05, 0)["curve"]) == 2
    assert got["curve_oa"] == max(got["curve"]) and 0.0 <= got["val_oa"] <= 1.0
    assert (
        got["counts"]["train"]
        == np.bincount(salinas_a["mask"].numpy()[tuple(coords["train"].T)], minlength=6).tolist()
    )


def test_the_svm_is_scored_on_the_folds_and_validation_part_the_models_are(salinas_a):
    """Development scores of the SVM, beside a recipe's: the same split, the same folds,
    the same held-out pixels; no epochs, so one entry per curve and no loss."""
    from geofm.data.splits import cross_validation_folds
    from geofm.tasks.pixel import svm_baseline
    from geofm.tasks.pixel_protocol import _seed_split, cross_validate_seed, validate_seed
    from geofm.tasks.pixel_recipe import merged

    recipe = load_recipe(merged(_recipe().as_dict(), {"split": {"kind": "disjoint"}}))
    coords, info = _seed_split(recipe, salinas_a, 0.05, 0, ["lola"], None)
    got = cross_validate_seed(
        recipe, dict(salinas_a), 0.05, 0, folds=3, method="svm", keep_predictions=True
    )
    image, mask = salinas_a["image"].float().numpy(), salinas_a["mask"].numpy()
    dev = np.concatenate([coords["train"], coords["val"]])
    folds = cross_validation_folds(mask, dev, 3, 0, **info["grid"])
    right = 0
    for f, kept in zip(folds, got["held_out"], strict=True):
        np.testing.assert_array_equal(kept["coords"], f.held_out)
        x = image[:, f.train[:, 0], f.train[:, 1]].T
        y = mask[f.train[:, 0], f.train[:, 1]]
        own, _ = svm_baseline(x, y, image[:, f.held_out[:, 0], f.held_out[:, 1]].T, seed=0)
        np.testing.assert_array_equal(kept["predictions"], own[None])
        assert kept["losses"].shape == (1, len(f.held_out)) and np.isnan(kept["losses"]).all()
        right += int((own == kept["truth"]).sum())
    assert got["curve"] == pytest.approx([right / sum(got["fold_held_out"])])
    assert got["val_oa"] == pytest.approx(got["curve"][0]) and got["best_epoch"] is None
    assert got["counts"] == info["counts"]

    val = validate_seed(recipe, dict(salinas_a), 0.05, 0, method="svm", keep_predictions=True)
    assert val["curve"] == [pytest.approx(val["val_oa"])] and val["best_epoch"] is None
    (part,) = val["held_out"]
    np.testing.assert_array_equal(part["coords"], coords["val"])  # the split's validation part
    x, y = image[:, coords["train"][:, 0], coords["train"][:, 1]].T, part["truth"]
    own, _ = svm_baseline(
        x,
        mask[coords["train"][:, 0], coords["train"][:, 1]],
        image[:, coords["val"][:, 0], coords["val"][:, 1]].T,
        seed=0,
    )
    np.testing.assert_array_equal(part["predictions"], own[None])
    assert val["val_oa"] == pytest.approx(float((own == y).mean()))


def test_a_given_split_trains_and_tests_as_the_drawn_one(salinas_a, tmp_path):
    """run_split on the coordinates run_seed draws gives run_seed's result: the protocol
    on a split given from outside (a benchmark's published pixels) is the same protocol."""
    from geofm.tasks.pixel_protocol import run_seed, run_split

    recipe = _recipe(epochs=1)
    drawn = run_seed(recipe, dict(salinas_a), 0.05, 4, ["lola", "svm"], 6, progress=False)
    mask = salinas_a["mask"].numpy()
    coords, _ = make_split(mask, "random", 0.05, 0.05, 3, seed=4)
    given = run_split(
        recipe,
        dict(salinas_a),
        {p: c.tolist() for p, c in coords.items()},
        4,
        ["lola", "svm"],
        progress=False,
        save_dir=tmp_path,
        split="published",
    )
    for a, b in zip(drawn, given, strict=True):
        assert a.method == b.method and a.counts == b.counts
        np.testing.assert_array_equal(a.metrics.confusion, b.metrics.confusion)
    assert drawn[0].details["split_radius"] == 3 and drawn[0].split == "random"
    assert "split_radius" not in given[0].details  # a given split records no buffer
    assert {r.split for r in given} == {"published"}
    share = len(coords["train"]) / sum(len(c) for c in coords.values())
    assert given[0].train_fraction == pytest.approx(share, abs=1e-4)
    assert Path(given[0].details["checkpoint"]).name == (
        f"lola_full_published_f{given[0].train_fraction:g}_seed4.pt"
    )


def test_a_given_split_is_checked_against_the_scene():
    from geofm.tasks.pixel_protocol import check_split

    mask = np.full((4, 5), 255, dtype=np.int64)
    mask[:2] = 0
    mask[2, :2] = 1
    ok = {"train": [[0, 0], [2, 0]], "val": [[0, 1]], "test": [[1, 1], [2, 1]]}
    assert check_split(mask, ok)["test"].dtype == np.int64
    # no validation pixels: the window models train to their last epoch
    assert check_split(mask, {**ok, "val": []})["val"].shape == (0, 2)

    def refused(match: str, **parts) -> None:
        with pytest.raises(ValueError, match=match):
            check_split(mask, {**ok, **parts})

    with pytest.raises(
        ValueError, match=r"parts \['train', 'val', 'test'\], got \['test', 'train'\]"
    ):
        check_split(mask, {"train": ok["train"], "test": ok["test"]})
    refused(r"got \['extra', 'test', 'train', 'val'\]", extra=[[0, 2]])
    refused(r"'val' must be \(N, 2\) integer .* shape \(3,\)", val=[0, 1, 2])
    refused(r"'val' must be .*float64", val=[[0.0, 1.0]])
    refused(r"'val' must be \(N, 2\) integer .* shape \(2, 0\)", val=np.zeros((2, 0), int))
    refused(
        r"1 pixels of split part 'test' lie outside the 4 x 5 scene, the first at row 4, column 0",
        test=[[1, 1], [4, 0]],
    )
    refused(r"1 pixels of split part 'train' lie outside .* row -1, column 0", train=[[-1, 0]])
    refused(
        r"1 pixels of split part 'test' have no label, the first at row 3, column 3",
        test=[[3, 3]],
    )
    refused(
        r"1 pixels are in both split parts 'train' and 'test', for example row 2, column 0",
        test=[[2, 0], [1, 1]],
    )
    refused(
        r"'test' lists 1 pixels more than once, for example row 1, column 2",
        test=[[1, 1], [1, 2], [2, 1], [1, 2]],
    )
    refused(r"'test' is empty \(2 train, 1 val, 0 test pixels\)", test=[])
    refused(r"'train' is empty", train=np.zeros((0, 2), int))
    refused(
        r"classes \[1\] have test pixels but no training pixels \(the training part holds classes \[0\]\)",
        train=[[0, 0]],
    )


def test_a_baseline_window_that_does_not_fit_names_the_scene(salinas_a):
    from geofm.tasks.pixel_protocol import run_seed

    small = dict(salinas_a)
    small["image"], small["mask"] = salinas_a["image"][:, :11, :40], salinas_a["mask"][:11, :40]
    small["card"] = "salinas_a"
    with pytest.raises(
        ValueError,
        match=r"ssftt's 13 x 13 pixel window is larger than the 11 x 40 scene 'salinas_a'; leave ssftt out",
    ):
        run_seed(_recipe(), small, 0.05, 0, ["lola", "ssftt"], 6, progress=False)
    with pytest.raises(ValueError, match=r"the model's 7 x 7 pixel window .* 5 x 40 .*patch <= 5"):
        small["image"], small["mask"] = small["image"][:, :5], small["mask"][:5]
        run_seed(_recipe(), small, 0.05, 0, ["lola"], 6, progress=False)
    with pytest.raises(ValueError, match="not a trained baseline"):
        from geofm.tasks.pixel_recipe import baseline_recipe

        baseline_recipe(_recipe(), "svm")


def test_a_tiny_last_training_batch_is_dropped(salinas_a, monkeypatch):
    """Batch norm fed a last batch of a few windows every epoch cost SSFTT about a point of
    OA on Indian Pines (1,026 windows, batches of 64): the remainder is dropped when a full
    batch exists, and a training part smaller than one batch is kept whole."""
    from geofm.tasks import pixel_protocol
    from geofm.tasks.pixel_protocol import run_seed

    seen = []
    real = pixel_protocol.sample_loader

    def loader(dataset, batch_size, shuffle, **kwargs):
        seen.append((len(dataset), batch_size, shuffle, kwargs.get("drop_last", False)))
        return real(dataset, batch_size, shuffle, **kwargs)

    monkeypatch.setattr(pixel_protocol, "sample_loader", loader)
    for per_class in (50, 5):  # 300 training windows, then 30 (fewer than a batch)
        run_seed(_recipe(epochs=1), dict(salinas_a), per_class, 0, ["lola"], 6, progress=False)
    train = [s for s in seen if s[2]]
    assert train == [(300, 64, True, True), (30, 64, True, False)]
    assert all(not s[3] for s in seen if not s[2])  # validation keeps every window


def test_a_recipe_with_tta_and_dilation_scores_and_saves_what_it_trained(
    tmp_path, salinas_a, monkeypatch
):
    """The protocol scores a ``tta`` model on the 8 views of each window (and the epoch on
    one view), and the saved model, reloaded, keeps ``tta`` and ``dilation``."""
    import geofm.models.lola_specvit as lola
    from geofm.tasks.pixel_protocol import run_seed

    views = []
    turn = lola.square_symmetry
    monkeypatch.setattr(lola, "square_symmetry", lambda x, k: views.append(k) or turn(x, k))
    recipe = load_recipe(
        {
            "scene": SALINAS_A,
            "split": {"val_fraction": 0.05},
            "model": {"kwargs": {**TINY_LOLA, "tta": True, "patch": 13, "dilation": 2}},
            "train": {"epochs": 1, "batch_size": 64},
        }
    )
    (result,) = run_seed(recipe, dict(salinas_a), 0.05, 0, ["lola"], 6, False, tmp_path)
    # window_logits turned the test windows (augmentation uses its own import): 7 views a batch
    assert views and set(views) == set(range(1, 8))
    model, _ = load_classifier(result.details["checkpoint"])
    assert model.tta and (model.patch, model.dilation) == (13, 2)
    mask = salinas_a["mask"].numpy()
    coords, _ = make_split(mask, "random", 0.05, 0.05, recipe.radius, seed=0)
    test = coords["test"]
    preds, probs = classify_pixels(model, salinas_a["image"], test, probabilities=True)
    again = classification_metrics(mask[test[:, 0], test[:, 1]], preds, 6)
    np.testing.assert_array_equal(again.confusion, result.metrics.confusion)
    model.tta = False  # the plain logits score the pixels otherwise
    _, plain = classify_pixels(model, salinas_a["image"], test, probabilities=True)
    assert np.abs(plain - probs).max() > 1e-4
    views.clear()
    plain_recipe = load_recipe(
        {"scene": SALINAS_A, "model": {"kwargs": TINY_LOLA}, "train": {"epochs": 1}}
    )
    run_seed(plain_recipe, dict(salinas_a), 0.05, 0, ["lola"], 6, False)
    assert not views  # without tta, one view


def test_a_dilated_recipe_takes_its_whole_extent_as_the_split_radius():
    from geofm.tasks.pixel_models import build_classifier

    recipe = load_recipe(
        {"scene": SALINAS_A, "model": {"kwargs": {**TINY_LOLA, "patch": 13, "dilation": 2}}}
    )
    assert recipe.patch == 13 and recipe.radius == 6  # the buffer covers the extent
    model, _ = build_classifier(recipe, 204, 6)
    assert (model.patch, model.dilation) == (13, 2)
    assert model.feature_size == 7  # the stem sees 7 x 7 samples of the 13 x 13 window


def test_validation_record_needs_the_logits_from_validation_step():
    """A task whose validation_step returns nothing cannot be recorded: the error says
    what it needs; what it records is each sample's class and unsmoothed loss."""
    from types import SimpleNamespace

    from geofm.tasks.callbacks import ValidationRecord

    rec = ValidationRecord()
    fit = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="fit"))
    with pytest.raises(TypeError, match=r"return \(B, C\) logits, got NoneType"):
        rec.on_validation_batch_end(fit, None, None, {}, 0)
    with pytest.raises(TypeError, match=r"got Tensor of shape \(4,\)"):
        rec.on_validation_batch_end(fit, None, torch.zeros(4), {}, 0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    for epoch in range(2):
        rec.on_validation_epoch_start(fit, None)
        rec.on_validation_batch_end(fit, None, logits[:2], {"label": torch.tensor([0, 0])}, 0)
        rec.on_validation_batch_end(fit, None, logits[2:] * epoch, {"label": torch.tensor([1])}, 1)
        rec.on_validation_epoch_end(fit, None)
    np.testing.assert_array_equal(rec.predictions(), [[0, 1, 0], [0, 1, 0]])
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0, 1]), reduction="none")
    np.testing.assert_allclose(rec.losses()[1], expected.numpy(), rtol=1e-6)
    assert rec.losses()[0][2] == pytest.approx(np.log(2))  # all-zero logits: log 2
    validating = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="validate"))
    rec.on_validation_epoch_start(validating, None)
    rec.on_validation_batch_end(validating, None, logits, {"label": torch.tensor([0, 0, 1])}, 0)
    rec.on_validation_epoch_end(validating, None)
    assert rec.predictions().shape == (2, 3)  # a validation outside the fit adds no row
