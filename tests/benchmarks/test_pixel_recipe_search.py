"""The recipe search scores variants on validation parts only, resumes, and reports."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import TINY_LOLA

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def search():
    spec = importlib.util.spec_from_file_location(
        "pixel_recipe_search", REPO / "benchmarks" / "pixel_recipe_search.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_variants_are_merged_into_the_recipe_key_by_key(search):
    base = {"model": {"kwargs": {"patch": 7, "components": 15}}, "train": {"epochs": 40}}
    out = search.merged(base, {"model": {"kwargs": {"patch": 9}}})
    assert out == {"model": {"kwargs": {"patch": 9, "components": 15}}, "train": {"epochs": 40}}
    assert base["model"]["kwargs"]["patch"] == 7  # the base is not changed


def test_bad_variant_files_are_refused(search, tmp_path):
    bad = tmp_path / "v.yaml"
    bad.write_text("- name: a\n- name: a\n")
    with pytest.raises(SystemExit, match="repeat"):
        search.read_variants(bad)
    bad.write_text("- nme: a\n")
    with pytest.raises(SystemExit, match="expected a list"):
        search.read_variants(bad)
    bad.write_text("- name: svm\n")
    with pytest.raises(SystemExit, match="'svm' names the rows of --svm"):
        search.read_variants(bad)


def test_search_touches_validation_pixels_only_and_resumes(search, tmp_path, monkeypatch, capsys):
    import geofm.tasks.pixel as pixel
    from geofm.data.cards import data_dir
    from geofm.data.datasets import read_scene
    from geofm.tasks.pixel_protocol import make_split

    root = data_dir() / "samples" / "salinas_a"
    mask = read_scene(root / "SalinasA_corrected.hdr", root / "SalinasA_gt.mat", "salinas_a")[
        "mask"
    ].numpy()
    test = make_split(mask, "random", 0.05, 0.05, 6, seed=0)[0]["test"]
    test_set = {tuple(c) for c in test.tolist()}
    real = pixel.classify_pixels
    classified = []

    def spy(model, image, coords, *args, **kwargs):
        classified.append({tuple(c) for c in np.asarray(coords).tolist()})
        return real(model, image, coords, *args, **kwargs)

    monkeypatch.setattr(pixel, "classify_pixels", spy)
    variants = tmp_path / "variants.yaml"
    variants.write_text(
        "- name: tiny\n"
        f"  changes: {{model: {{kwargs: {TINY_LOLA}}}, train: {{epochs: 1, stop_epoch: null}}}}\n"
        "- name: tiny_lr\n"
        f"  changes: {{model: {{kwargs: {TINY_LOLA}}}, train: {{epochs: 1, stop_epoch: null, lr: 3.0e-3}}}}\n"
    )
    out = tmp_path / "search.csv"
    args = ["--variants", str(variants), "--scene", "salinas_a:0.05", "--splits", "random"]
    assert search.main([*args, "--only", "tiny", "--output", str(out), "--keep-predictions"]) == 0
    assert classified and all(not (c & test_set) for c in classified)
    # kept: the validation part's pixels, classes and losses, one fold
    (fold,), block_size, buffer = search.read_predictions(
        search.predictions_path(out, "tiny", "salinas_a", "random", 0)
    )
    assert (block_size, buffer) == (0, 0)
    assert fold["predictions"].shape == fold["losses"].shape == (1, 267)
    assert {tuple(c) for c in fold["coords"].tolist()} == classified[-1]
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["scene"], r["split"], r["seed"]) for r in rows] == [
        ("tiny", "salinas_a", "random", "0")
    ]
    assert 0.0 <= float(rows[0]["val_oa"]) <= 1.0 and rows[0]["n_val"] == "267"
    # the run's per-epoch validation curve is kept beside the CSV
    (entry,) = search.read_curves(tmp_path / "search.curves.jsonl")
    assert entry["variant"] == "tiny" and entry["seed"] == 0 and len(entry["curve"]) == 1
    classified.clear()
    assert search.main([*args, "--output", str(out)]) == 0  # "tiny" is kept, not rerun
    assert len(classified) == 1 and len(list(csv.DictReader(out.open()))) == 2
    assert [e["variant"] for e in search.read_curves(search.curves_path(out))] == [
        "tiny",
        "tiny_lr",
    ]
    capsys.readouterr()
    assert search.main([*args, "--output", str(out), "--report"]) == 0
    table = capsys.readouterr().out
    assert "| tiny |" in table and "| tiny_lr |" in table and "salinas_a random" in table


def test_search_by_cross_validation_writes_its_own_rows(search, tmp_path, capsys):
    variants = tmp_path / "variants.yaml"
    variants.write_text(
        f"- name: tiny\n  changes: {{model: {{kwargs: {TINY_LOLA}}}, train: {{epochs: 1, stop_epoch: null}}}}\n"
    )
    args = ["--variants", str(variants), "--scene", "salinas_a:0.05", "--splits", "random"]
    out = tmp_path / "cv.csv"
    assert search.main([*args, "--folds", "2", "--output", str(out), "--keep-predictions"]) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert row["folds"] == "2" and row["best_epoch"] == "" and row["curve_epoch"] == "0"
    assert row["n_val"] == "535"  # the 268 training and 267 validation pixels, each scored once
    (entry,) = search.read_curves(search.curves_path(out))
    assert len(entry["curve"]) == 1 and entry["curve"][0] == pytest.approx(float(row["curve_oa"]))
    # every held-out pixel's class after each epoch is kept; they give the curve, and with
    # one epoch there is nothing to choose: --selection's OA is the curve's
    folds, block_size, buffer = search.read_predictions(
        search.predictions_path(out, "tiny", "salinas_a", "random", 0)
    )
    assert (block_size, buffer) == (0, 0) and sum(len(f["truth"]) for f in folds) == 535
    assert all(f["predictions"].shape == (1, len(f["truth"])) for f in folds)
    right = sum(int((f["predictions"][0] == f["truth"]).sum()) for f in folds)
    assert right / 535 == pytest.approx(entry["curve"][0], abs=1e-6)
    (chosen,) = search.selection_entries(out)
    assert chosen["curve"] == pytest.approx(entry["curve"], abs=1e-6)
    capsys.readouterr()
    assert search.main([*args, "--folds", "2", "--output", str(out), "--report"]) == 0
    assert "| tiny |" in capsys.readouterr().out
    # the SVM on the same folds, into the same CSV: one score, the pixels the variant's had
    svm_args = ["--svm", "--scene", "salinas_a:0.05", "--splits", "random", "--folds", "2"]
    assert search.main([*svm_args, "--output", str(out), "--keep-predictions"]) == 0
    svm_row = list(csv.DictReader(out.open()))[1]
    assert svm_row["variant"] == "svm" and svm_row["curve_oa"] == svm_row["val_oa"]
    svm_folds, _, _ = search.read_predictions(
        search.predictions_path(out, "svm", "salinas_a", "random", 0)
    )
    for mine, its in zip(folds, svm_folds, strict=True):
        np.testing.assert_array_equal(mine["coords"], its["coords"])
        assert its["predictions"].shape == (1, len(its["truth"]))
    capsys.readouterr()
    assert (
        search.main(["--selection", str(out), "--no-choice", "--at", "1", "--against", "tiny"]) == 0
    )
    printed = capsys.readouterr().out
    assert "| svm | 1 (no epochs) |" in printed and "| svm | 1 | " in printed
    with pytest.raises(SystemExit):  # the SVM is scored alone
        search.main([*svm_args, "--variants", str(variants), "--output", str(out)])
    # one CSV holds one kind of score; --folds below 2 is refused before any training
    with pytest.raises(SystemExit, match="rows of another kind"):
        search.main([*args, "--output", str(out)])
    with pytest.raises(SystemExit, match="holds 2-fold scores; write the 3-fold ones"):
        search.main([*args, "--folds", "3", "--output", str(out)])
    with pytest.raises(SystemExit, match="--folds must be >= 2, got 1"):
        search.main([*args, "--folds", "1", "--output", str(tmp_path / "new.csv")])


def test_maps_of_a_run_are_drawn_for_every_method(tmp_path, monkeypatch):
    from geofm.tasks import pixel_recipe
    from geofm.tasks.pixel_protocol import run_protocol
    from geofm.tasks.pixel_recipe import load_recipe
    from geofm.tasks.pixel_results import write_results

    monkeypatch.setitem(pixel_recipe.BASELINE_RECIPES["ssftt"]["train"], "epochs", 1)
    recipe = load_recipe(
        {
            "scene": {
                "card": "salinas_a",
                "cube": "{data}/samples/salinas_a/SalinasA_corrected.hdr",
                "gt": "{data}/samples/salinas_a/SalinasA_gt.mat",
            },
            "model": {"kwargs": TINY_LOLA},
            "train": {"epochs": 1},
            "baselines": ["svm", "ssftt"],
        }
    )
    results, classes = run_protocol(
        recipe, 0.05, [0], progress=False, save_dir=tmp_path / "models", echo=lambda s: None
    )
    write_results(tmp_path / "run.csv", results, classes, recipe)
    spec = importlib.util.spec_from_file_location(
        "pixel_maps", REPO / "benchmarks" / "pixel_maps.py"
    )
    maps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maps)
    out = tmp_path / "maps.png"
    assert maps.main([str(tmp_path / "run.json"), "--seed", "0", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no run of seed 3"):
        maps.main([str(tmp_path / "run.json"), "--seed", "3", "--out", str(out)])
    # a record whose split is not the one rebuilt (another buffer, another geofm) is refused
    entries = json.loads((tmp_path / "run.json").read_text())
    assert {e["details"]["split_radius"] for e in entries} == {6}
    for e in entries:
        e["counts"]["train"][0] += 1
    (tmp_path / "other.json").write_text(json.dumps(entries))
    with pytest.raises(SystemExit, match="not the run's"):
        maps.main([str(tmp_path / "other.json"), "--seed", "0", "--out", str(out)])


def test_curves_choose_the_epoch_where_the_mean_of_the_cells_peaks(search, tmp_path, capsys):
    """Each cell's curve is the mean over its seeds, the cells count equally, and the
    earliest epoch of the highest mean is chosen; each CSV row takes the last curve
    written for its run, and a row without one is refused."""

    def write(csv_name: str, entries: list[tuple[str, str, int, list[float]]]) -> Path:
        out = tmp_path / csv_name
        lines = [
            json.dumps({"variant": "v", "scene": sc, "split": sp, "seed": seed, "curve": c})
            for sc, sp, seed, c in entries
        ]
        search.curves_path(out).write_text("\n".join(lines) + "\n")
        keys = dict.fromkeys((sc, sp, seed) for sc, sp, seed, _ in entries)
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["variant", "scene", "split", "seed"])
            writer.writeheader()
            writer.writerows(
                {"variant": "v", "scene": sc, "split": sp, "seed": seed} for sc, sp, seed in keys
            )
        return out

    a = write(
        "cv.csv",
        [  # disjoint: seeds 0 and 1 average to [0.5, 0.7, 0.6, 0.5]
            ("ip", "disjoint", 0, [0.0, 0.0, 0.0, 0.0]),  # a killed run's, rerun below
            ("ip", "disjoint", 0, [0.4, 0.8, 0.6, 0.4]),
            ("ip", "disjoint", 1, [0.6, 0.6, 0.6, 0.6]),
        ],
    )
    b = write("random.csv", [("ip", "random", 0, [0.5, 0.7, 0.8, 0.9])])
    (got,) = search.stop_epochs([e for c in (a, b) for e in search.curves_of(c)]).values()
    np.testing.assert_allclose(got["mean"], [0.5, 0.7, 0.7, 0.7])
    assert got["epoch"] == 2  # the earliest of the three tied epochs
    assert got["cells"][("ip", "disjoint")][0] == [0, 1]
    plot = tmp_path / "curves.png"
    assert search.main(["--curves", str(a), str(b), "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "| v | 2 (best of the mean) | 70.00 | 70.00 | 70.00 |" in table
    assert "| v | 4 (last) | 50.00 | 90.00 | 70.00 |" in table
    assert plot.stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no curves beside"):
        search.main(["--curves", str(tmp_path / "none.csv")])
    with open(b, "a") as f:  # a row of a run whose curve was never kept
        f.write("v,sa,random,3\n")
    with pytest.raises(SystemExit, match=r"1 of its 2 runs have no curve.*first: v sa random 3"):
        search.main(["--curves", str(b)])
    c = write("other.csv", [("sa", "random", 0, [0.5, 0.7])])
    with pytest.raises(SystemExit, match=r"v: curves of \[2, 4\] epochs"):
        search.main(["--curves", str(a), str(c)])
    with pytest.raises(SystemExit):  # a search needs its variants and output
        search.main(["--scene", "salinas_a:0.05"])


def test_variants_are_paired_with_a_base_seed_by_seed(search, tmp_path, capsys):
    def entry(variant, scene, split, seed, curve):
        return {"variant": variant, "scene": scene, "split": split, "seed": seed, "curve": curve}

    base = [
        entry("base", "ip", "disjoint", 0, [0.5, 0.6]),
        entry("base", "ip", "disjoint", 1, [0.7, 0.8]),
        entry("base", "ip", "disjoint", 2, [0.7, 0.7]),
        entry("base", "sa", "random", 0, [0.9, 0.95]),
    ]
    better = [  # after epoch 2: +10, +4 and +1 points on ip disjoint, -1 on sa random
        entry("v", "ip", "disjoint", 1, [0.8, 0.84]),  # seeds in another order: still paired
        entry("v", "ip", "disjoint", 0, [0.6, 0.7]),
        entry("v", "ip", "disjoint", 2, [0.7, 0.71]),
        entry("v", "sa", "random", 0, [0.9, 0.94]),
    ]
    (got,) = search.paired(base + better, "base", 2)
    assert got.variant == "v" and got.epoch == 2
    ip, sa = got.cells[("ip", "disjoint")], got.cells[("sa", "random")]
    assert ip.seeds == (0, 1, 2) and ip.higher == 3
    # mean 5, sample sd sqrt(21), t(0.975, 2) = 4.3027
    half = 4.302653 * np.sqrt(21) / np.sqrt(3)
    assert (ip.mean, ip.low, ip.high) == pytest.approx((5.0, 5.0 - half, 5.0 + half))
    assert (sa.mean, sa.low, sa.high, sa.higher) == (pytest.approx(-1.0), None, None, 0)
    assert got.mean == pytest.approx(2.0)
    assert (got.not_lower, got.lowest) == (1, pytest.approx(-1.0))
    (first,) = search.paired(base + better, "base", 1)
    assert first.not_lower == 2 and first.mean == pytest.approx(10 / 3)  # (20/3 + 0) / 2

    row = f"| v | 2 | +5.00 ({5 - half:+.2f} to {5 + half:+.2f}); 3 of 3 | -1.00; 0 of 1 |"
    assert row + " +2.00 | 1 of 2 | -1.00 |" in search.paired_report([got])
    with pytest.raises(SystemExit, match=r"--against nope: no such variant"):
        search.paired(base + better, "nope", 2)
    with pytest.raises(SystemExit, match=r"--at 3: the curves of v have epochs 1..2"):
        search.paired(base + better, "base", 3)
    other_seed = [*better[:3], entry("v", "sa", "random", 1, [0.9, 0.94])]
    with pytest.raises(
        SystemExit, match=r"v sa random: seeds \[1\] against base's \[0\]; base did not run \[1\]"
    ):
        search.paired(base + other_seed, "base", 2)
    # seeds only the base ran are left out: the pairs are the variant's seeds
    (fewer,) = search.paired(base + better[1:], "base", 2)
    assert fewer.cells[("ip", "disjoint")].seeds == (0, 2)
    assert fewer.cells[("ip", "disjoint")].mean == pytest.approx(5.5)  # (10 + 1) / 2
    # a variant that ran some of the base's cells is paired on those
    (some,) = search.paired(base + better[:3], "base", 2)
    assert list(some.cells) == [("ip", "disjoint")] and some.mean == pytest.approx(5.0)
    with pytest.raises(SystemExit, match=r"v cannot be paired on \[\('ip', 'random'\)\]"):
        search.paired(base + better + [entry("v", "ip", "random", 0, [0.5, 0.5])], "base", 2)
    with pytest.raises(SystemExit, match="v sa random: seed 0 twice"):
        search.paired(base + better + better[3:], "base", 2)
    elsewhere = [*better[:3], {**better[3], "pixels": "10 scored"}]
    with pytest.raises(
        SystemExit, match="seed 0 scored other pixels than base: 10 scored against 9"
    ):
        search.paired([*base[:3], {**base[3], "pixels": "9 scored"}, *elsewhere], "base", 2)
    # one score stands at every epoch for the SVM only; a one-epoch run is not stretched
    svm = [entry("svm", sc, sp, seed, [0.5]) for sc, sp, seed in [("sa", "random", 0)]]
    (against_svm,) = search.paired(base + svm, "base", 2)
    assert against_svm.cells[("sa", "random")].mean == pytest.approx(-45.0)
    short = [entry("v", "sa", "random", 0, [0.5])]
    with pytest.raises(SystemExit, match=r"--at 2: the curves of v have epochs 1..1"):
        search.paired(base + short, "base", 2)
    tables = search.paired_report([got, some])  # two sets of cells: two tables
    assert tables.count("| variant | epoch |") == 2

    # from the command line, out of the curves kept beside a CSV
    out = tmp_path / "cv.csv"
    runs = base + better
    search.curves_path(out).write_text("".join(json.dumps(e) + "\n" for e in runs))
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["variant", "scene", "split", "seed"])
        writer.writeheader()
        writer.writerows({k: e[k] for k in ("variant", "scene", "split", "seed")} for e in runs)
    assert search.main(["--curves", str(out), "--at", "2", "--against", "base"]) == 0
    printed = capsys.readouterr().out
    assert "ip disjoint (seeds 0 1 2)" in printed and row in printed
    with pytest.raises(SystemExit):  # an epoch to compare at is needed
        search.main(["--curves", str(out), "--against", "base"])


@pytest.mark.parametrize("variants", ["pixel_recipe_variants.yaml", "pixel_transfer_variants.yaml"])
def test_every_recorded_variant_pins_what_the_configs_have_changed_since(variants):
    """Each variant is the configs plus its changes: it must name the settings the configs
    have changed since it ran (the stop epoch, round 11; the weights kept, round 13; the
    class weights and the 3-D front-end, round 14) to stay the run it recorded."""
    import yaml

    for v in yaml.safe_load((REPO / "benchmarks" / variants).read_text()):
        train = v["changes"]["train"]
        pinned = {"stop_epoch", "keep", "epochs", "precision", "class_weight_power"}
        assert pinned <= set(train), v["name"]
        assert "conv_channels" in v["changes"]["model"]["kwargs"], v["name"]


def test_selection_chooses_the_epoch_on_one_half_and_scores_the_other(search, tmp_path, capsys):
    """What the test runs do with a curve: the epoch chosen on validation pixels is scored
    on others. Two pixels, one right after each of two epochs: choosing on either one
    picks the epoch that is wrong on the other, so stopping after epoch 2 scores 0%
    (the last weights score 50%, and choosing on the scored pixels would score 100%)."""
    fold = {
        "coords": np.array([[0, 0], [0, 1]]),
        "truth": np.array([1, 2]),
        "predictions": np.array([[1, 0], [0, 2]]),  # epoch 1: pixel 0 right; epoch 2: pixel 1
        "losses": np.zeros((2, 2)),
    }
    np.testing.assert_allclose(search.selection_curve([fold], 0, repeats=5), [0.5, 0.0])
    # without a choice, the weights after each epoch on the same pixels: one right of two
    np.testing.assert_allclose(search.selection_curve([fold], 0, choose=False), [0.5, 0.5])
    # in one 8 x 8 block the pixels cannot be halved; in two blocks they are, block by block
    with pytest.raises(SystemExit, match="2 held-out pixels in one block cannot be halved"):
        search.selection_curve([fold], 8)
    fold["coords"] = np.array([[0, 0], [0, 9]])
    np.testing.assert_allclose(search.selection_curve([fold], 8, repeats=5), [0.5, 0.0])
    # a pixel scored has no choosing pixel within the buffer: at 1 pixel apart none is left
    near = {**fold, "coords": np.array([[0, 7], [0, 8]])}
    with pytest.raises(SystemExit, match="buffer of 1 pixels leaves no held-out pixel"):
        search.selection_curve([near], 8, buffer=1)
    np.testing.assert_allclose(search.selection_curve([fold], 8, buffer=1), [0.5, 0.0])
    # folds pool: with a second, always-right fold of 4 pixels in 3 blocks, each halving
    # scores every pixel once: (1 + 4) / 6 after epoch 1, (0 + 4) / 6 after epoch 2
    right = {
        "coords": np.array([[0, 0], [0, 20], [0, 40], [0, 41]]),
        "truth": np.zeros(4, dtype=np.int64),
        "predictions": np.zeros((2, 4), dtype=np.int64),
        "losses": np.zeros((2, 4)),
    }
    np.testing.assert_allclose(search.selection_curve([fold, right], 8), [5 / 6, 4 / 6])
    groups = np.repeat(np.arange(6), 3)
    for _ in range(5):
        half = search._half(groups, np.random.default_rng(_))
        assert half.sum() == 9 and all(len(set(half[groups == g])) == 1 for g in range(6))
    # ties in OA go to the lower mean loss on the choosing pixels (over both pixels:
    # 0, 0, 2), then to the earlier epoch
    correct = np.array([[True, False], [True, False], [True, False]])
    losses = np.array([[0.5, 0.0], [0.2, 9.0], [0.2, 0.0]])
    select = np.array([True, False])
    np.testing.assert_array_equal(search.chosen_epochs(correct, losses, select), [0, 1, 1])
    # --selection reads the kept predictions of each run a CSV holds
    out = tmp_path / "cv.csv"
    out.write_text("variant,scene,split,seed\nv,ip,disjoint,0\n")
    with pytest.raises(SystemExit, match="not made with --keep-predictions"):
        search.main(["--selection", str(out)])
    search.save_predictions(
        search.predictions_path(out, "v", "ip", "disjoint", 0),
        {
            "grid": {"block_size": 8, "buffer": 0},
            "held_out": [{**fold, "losses": np.zeros((2, 2))}],
        },
    )
    assert search.main(["--selection", str(out), "--at", "1"]) == 0
    table = capsys.readouterr().out
    assert "| v | 1 (best of the mean) | 50.00 | 50.00 |" in table
    assert (
        "| v | 1 (given) | 50.00 | 50.00 |" in table and "| v | 2 (last) | 0.00 | 0.00 |" in table
    )
    assert search.main(["--selection", str(out), "--no-choice"]) == 0
    assert "| v | 2 (last) | 50.00 | 50.00 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --no-choice is --selection's
        search.main(["--curves", str(out), "--no-choice"])
    with pytest.raises(SystemExit, match=r"--at 3: the curves have epochs 1..2"):
        search.main(["--selection", str(out), "--at", "3"])
    with pytest.raises(SystemExit):
        search.main(["--selection", str(out), "--curves", str(out)])
    with pytest.raises(SystemExit, match="no such file"):
        search.main(["--selection", str(tmp_path / "none.csv")])
    with pytest.raises(SystemExit):  # --at alone
        search.main(["--at", "2", "--variants", "v.yaml", "--output", str(out)])
