"""The suite runner, resume after an interruption, the report, on the bundled real data."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

import gfm_bench.suites as suites
from gfm_bench.encoders import GeofmEncoder
from gfm_bench.mini import load_mini, salinas_a_pixels, salinas_a_tiles
from gfm_bench.report import aggregate, bootstrap_ci, markdown, write_report
from gfm_bench.results import ResultsFile, RunKey
from gfm_bench.suites import Entry, RunPlan, run_suite, suite_entries

TINY = partial(GeofmEncoder, "less_vit_tiny", depth=1, rank=2)


def test_salinas_mini_splits_are_disjoint_and_leak_free():
    d = salinas_a_pixels()
    centres = {p: {tuple(c) for c in getattr(d, p).coords} for p in ("train", "val", "test")}
    assert not (centres["train"] & centres["test"]) and not (centres["val"] & centres["test"])
    # no test window (radius 8) holds a training pixel: the buffer of the disjoint split
    from geofm.data.splits import find_leaks

    assert len(find_leaks(d.train.coords, d.test.coords, 8)) == 0
    assert np.bincount(d.train_labels).max() <= 50 and len(d.val) <= 300
    assert set(np.unique(d.test.labels)) == set(range(6))  # every class is tested
    s = d.test[0]
    assert s["image"].shape == (204, 17, 17) and d.crop == 16
    tiles = salinas_a_tiles()
    assert tiles.task == "segmentation" and tiles.test[0]["mask"].shape == (16, 16)
    origins = [tuple(o) for p in ("train", "val", "test") for o in getattr(tiles, p).origins]
    assert len(origins) == len(set(origins))
    with pytest.raises(ValueError, match="unknown mini dataset"):
        load_mini("nope", ".")


def test_suite_entries_filters_and_errors():
    entries = suite_entries("mini", ["salinas_a_pixels"], ["knn"], [0.5])
    assert entries == [
        Entry("salinas_a_pixels", ("knn",), (0.5,), suites.SUITES["mini"][1].settings)
    ]
    with pytest.raises(ValueError, match="has no dataset nope"):
        suite_entries("mini", ["nope"])
    with pytest.raises(ValueError, match="runs no protocol"):
        suite_entries("mini", protocols=["svm"])
    with pytest.raises(ValueError, match="unknown suite"):
        suite_entries("huge")


def _plan(path, resume=False, seeds=(0, 1)):
    entries = [
        Entry(
            "salinas_a_pixels",
            ("knn", "linear_probe"),
            (1.0,),
            {"knn": {"ks": (5,)}, "linear_probe": {"min_steps": 100}},
        )
    ]
    return RunPlan(
        entries,
        [("less_vit_tiny", TINY, None)],
        seeds,
        ResultsFile(path),
        resume=resume,
        progress=False,
        log=lambda m: None,
    )


@pytest.fixture(scope="module")
def salinas():
    return salinas_a_pixels()


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, salinas, monkeypatch):
    path = tmp_path / "results.csv"
    real = suites.run_protocol
    calls = []

    def dies_on_third(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third run
        return real(*args, **kwargs)

    monkeypatch.setattr(suites, "run_protocol", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_suite(_plan(path), lambda entry: salinas)
    first = ResultsFile(path).rows()
    assert len(ResultsFile(path).finished()) == 2
    monkeypatch.setattr(suites, "run_protocol", real)
    with pytest.raises(FileExistsError, match="pass --resume"):
        run_suite(_plan(path), lambda entry: salinas)
    counts = run_suite(_plan(path, resume=True), lambda entry: salinas)
    assert counts == {"done": 2, "skipped": 2}
    rows = ResultsFile(path).rows()
    assert rows[: len(first)] == first  # finished rows untouched
    heads = [(r["protocol"], r["seed"]) for r in rows if r["metric"] == "top1"]
    assert sorted(heads) == [
        ("knn", "0"),
        ("knn", "1"),
        ("linear_probe", "0"),
        ("linear_probe", "1"),
    ]
    per_class = [r for r in rows if r["metric"].startswith("top1/")]
    assert len(per_class) == 4 * 6
    assert {r["metric"] for r in per_class} == {f"top1/{c}" for c in salinas.classes}
    # kNN has no randomness of its own at label fraction 1, but a random initialisation is
    # drawn per seed, so the two seeds see two different encoders
    knn = [float(r["value"]) for r in rows if r["metric"] == "top1" and r["protocol"] == "knn"]
    assert knn[0] != knn[1]
    assert {json.loads(r["config"])["init_seed"] for r in rows if r["protocol"] == "knn"} == {0, 1}
    # ... and the seeds of one protocol stay one cell of the report
    cells = [c for c in aggregate(rows, n_boot=100) if c.protocol == "knn"]
    assert len(cells) == 1 and cells[0].seeds == (0, 1)
    assert run_suite(_plan(path, resume=True), lambda entry: salinas)["done"] == 0


def test_bootstrap_interval_and_report(tmp_path):
    assert bootstrap_ci([5.0]) == (5.0, 5.0)
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0], n_boot=2000)
    assert 1.0 <= lo < 2.0 < hi <= 3.0
    res = ResultsFile(tmp_path / "r.csv")
    for seed, (a, b) in enumerate([(80.0, 60.0), (82.0, 61.0), (84.0, 59.0)]):
        for model, hash_, value in (
            ("less_vit_tiny", "abcdef123456", a),
            ("less_vit_tiny", "random-init", b),
        ):
            res.append_run(
                RunKey(model, hash_, "eurosat", "linear_probe", 1.0, seed, "c"),
                ("top1", value),
                [("val_top1", value - 1)],
            )
    cells = aggregate(res.rows(), n_boot=2000)
    assert [c.encoder for c in cells] == ["less_vit_tiny (random init)", "less_vit_tiny @abcdef12"]
    assert cells[1].mean == pytest.approx(82.0) and cells[1].values == (80.0, 82.0, 84.0)
    text = markdown(cells)
    assert "| less_vit_tiny @abcdef12 | linear_probe | 1 | c | 3 | 82.00 |" in text
    assert "LESS ViT-B 95.12" in text  # the published linear probe beside it
    out, fig = write_report(
        tmp_path / "r.csv", tmp_path / "report.md", tmp_path / "report.png", n_boot=500
    )
    assert fig.stat().st_size > 5000 and "![results](report.png)" in out.read_text()
    with pytest.raises(ValueError, match="no finished run"):
        write_report(tmp_path / "empty.csv", tmp_path / "x.md", None)


def test_data_variants_are_part_of_the_key_and_val_fraction_cuts_val(salinas):
    import dataclasses

    from gfm_bench.suites import _key_config, load_entry

    plain = Entry("bigearthnet", ("knn",))
    radar = dataclasses.replace(plain, modalities=("optical", "radar"), val_fraction=0.1)
    assert _key_config(plain, {"k": 1}) == {"k": 1}  # defaults leave old keys unchanged
    assert _key_config(radar, {"k": 1})["data"] == {
        "modalities": ["optical", "radar"],
        "val_fraction": 0.1,
    }
    cut = load_entry(dataclasses.replace(plain, val_fraction=0.1), lambda e: salinas)
    assert len(cut.val) == 30 and len(salinas.val) == 300 and cut.test is salinas.test
    full = suites.SUITES["full"]
    assert {e.dataset for e in full if "radar" in e.modalities} == {"bigearthnet", "dfc2020"}


def test_timm_encoder_rows_are_named_by_their_bands():
    from gfm_bench.cli import _encoders, build_parser

    args = build_parser().parse_args(
        [
            "run",
            "--output",
            "x.csv",
            "--encoder",
            "timm:resnet18",
            "--timm-bands",
            "B04",
            "B03",
            "B02",
        ]
    )
    ((name, _, ckpt),) = _encoders(args)
    assert name == "timm/resnet18[B04+B03+B02]" and ckpt is None
