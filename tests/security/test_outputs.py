"""Never destroy the user's data: no output is an input (same path, symbolic link or hard
link; refused even with --overwrite), no existing file is replaced unasked, every output is
checked before any work, and classify-pixels writes each seed as it ends and resumes."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from geofm.cli import main
from geofm.data.outputs import InputOverwriteError, check_outputs, input_files, write_atomic

SALINAS = ("SalinasA_corrected.hdr", "SalinasA_corrected.img", "SalinasA_gt.mat")


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def landsat_copy(tmp_path, landsat_tif) -> Path:
    return Path(shutil.copy(landsat_tif, tmp_path / "in.tif"))


@pytest.fixture
def salinas_copy(tmp_path, salinas_a_dir) -> Path:
    folder = tmp_path / "salinas"
    folder.mkdir()
    for name in SALINAS:
        shutil.copy(salinas_a_dir / name, folder / name)
    return folder


# --------------------------------------------------------------------------- check_outputs
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(landsat_copy, tmp_path):
    link = tmp_path / "link.tif"
    link.symlink_to(landsat_copy)
    hard = tmp_path / "hard.tif"
    os.link(landsat_copy, hard)
    for out in (landsat_copy, link, hard, tmp_path / ".." / tmp_path.name / "in.tif"):
        with pytest.raises(InputOverwriteError, match=r"is the input .*in\.tif"):
            check_outputs([out], [landsat_copy], overwrite=True)
    # a new file beside the input is fine
    assert check_outputs([tmp_path / "map.tif"], [landsat_copy]) == [tmp_path / "map.tif"]


def test_an_envi_cube_and_a_band_folder_are_all_their_files(salinas_copy, s2_tile_dir):
    hdr = salinas_copy / "SalinasA_corrected.hdr"
    binary = salinas_copy / "SalinasA_corrected.img"
    assert set(input_files(hdr)) == set(input_files(binary)) == {hdr, binary}
    with pytest.raises(InputOverwriteError, match="SalinasA_corrected"):
        check_outputs([binary], [hdr], overwrite=True)
    band = next(s2_tile_dir.glob("*_B02.jp2"))
    assert band in input_files(s2_tile_dir)
    # a binary named other than .img still has its header: neither may be written over
    bsq = salinas_copy / "cube.bsq"
    bsq.write_bytes(binary.read_bytes())
    (salinas_copy / "cube.hdr").write_text(hdr.read_text())
    assert input_files(bsq) == [bsq, salinas_copy / "cube.hdr"]
    with pytest.raises(InputOverwriteError, match=r"cube\.hdr"):
        check_outputs([salinas_copy / "cube.hdr"], [bsq], overwrite=True)


def test_outputs_that_cannot_be_written_are_refused_before_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        check_outputs([tmp_path], [])
    with pytest.raises(NotADirectoryError, match="afile is a file"):
        check_outputs([tmp_path / "afile" / "sub" / "out.csv"], [])
    with pytest.raises(FileExistsError, match="afile exist; pass --overwrite"):
        check_outputs([tmp_path / "afile"], [])


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
    out = tmp_path / "stats.yaml"
    out.write_text("old")

    def fail(part: Path) -> None:
        part.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, fail)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["stats.yaml"]
    write_atomic(out, lambda part: part.write_text("new"))
    assert out.read_text() == "new"


# --------------------------------------------------------------------------- commands
def test_map_refuses_to_write_over_its_input(salinas_copy, tiny_lola_checkpoint, tmp_path, capsys):
    hdr = salinas_copy / "SalinasA_corrected.hdr"
    binary = salinas_copy / "SalinasA_corrected.img"
    before = {p: _digest(p) for p in (hdr, binary, tiny_lola_checkpoint)}
    link = tmp_path / "link.tif"
    link.symlink_to(binary)
    for out in (hdr, binary, link, tiny_lola_checkpoint):
        code = main(
            [
                "map",
                str(hdr),
                str(out),
                "--checkpoint",
                str(tiny_lola_checkpoint),
                "--overwrite",
                "--no-progress",
            ]
        )
        assert code == 2
        assert "never writes over an input" in capsys.readouterr().err
    assert {p: _digest(p) for p in before} == before


def test_map_refuses_to_write_over_the_scene_its_model_records(
    tmp_path, tiny_lola_checkpoint, landsat_copy, capsys
):
    """Without a scene, `geofm map` maps the one the model was trained on: a map named like
    it would replace it (and the deprecated `geofm predict` goes the same way)."""
    import torch

    ckpt = torch.load(tiny_lola_checkpoint, weights_only=True)
    ckpt["source_files"] = {"cube": str(landsat_copy)}
    model = tmp_path / "model.pt"
    torch.save(ckpt, model)
    before = _digest(landsat_copy)
    assert (
        main(
            [
                "map",
                "--training-scene",
                str(landsat_copy),
                "--checkpoint",
                str(model),
                "--overwrite",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "never writes over an input" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                str(model),
                "--out-dir",
                str(landsat_copy.parent),
                "--name",
                landsat_copy.stem,
                "--overwrite",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "never writes over an input" in capsys.readouterr().err
    assert _digest(landsat_copy) == before


def test_predict_scene_on_a_geotiff_refuses_in_tif_in_tif(landsat_copy):
    import torch

    from geofm.inference import ScenePredictor, predict

    class Mean(torch.nn.Module):
        def forward(self, image, wavelengths, gsd):
            return image.mean((2, 3))[:, :2]

    before = _digest(landsat_copy)
    with pytest.raises(InputOverwriteError):
        predict(
            ScenePredictor(Mean(), ["a", "b"], ["B3", "B2", "B1"], tile=64),
            landsat_copy,
            landsat_copy,
            card="landsat_rgb",
            overwrite=True,
            progress=False,
        )
    assert _digest(landsat_copy) == before


@pytest.mark.parametrize("command", ["stats", "plot"])
def test_stats_and_plot_refuse_an_existing_out_without_overwrite(
    command, landsat_copy, tmp_path, capsys
):
    def run(out, *extra):
        quiet = ["--no-progress"] if command == "stats" else []
        return main(
            [command, str(landsat_copy), "--card", "landsat_rgb", "--out", str(out), *quiet, *extra]
        )

    out = tmp_path / f"out.{'yaml' if command == 'stats' else 'png'}"
    out.write_text("precious")
    assert run(out) == 2
    assert "exist; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "precious"
    assert run(out, "--overwrite") == 0
    assert out.read_bytes() != b"precious"
    before = _digest(landsat_copy)
    assert run(landsat_copy, "--overwrite") == 2
    assert "never writes over an input" in capsys.readouterr().err
    assert _digest(landsat_copy) == before


def test_export_refuses_to_replace_its_own_checkpoint(tmp_path):
    from geofm.tasks.export import export_encoder

    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 a training checkpoint")
    with pytest.raises(InputOverwriteError):
        export_encoder(ckpt, ckpt, overwrite=True)
    assert ckpt.read_bytes() == b"PK\x03\x04 a training checkpoint"


# --------------------------------------------------------------------------- classify-pixels
def _recipe_file(tmp_path, recipe: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_classify_pixels_checks_its_outputs_before_any_work(
    tmp_path, tiny_lola_recipe, monkeypatch, capsys
):
    import geofm.tasks.pixel_protocol as protocol

    def no_work(*args, **kwargs):
        raise AssertionError("the scene was read before the outputs were checked")

    monkeypatch.setattr(protocol, "load_recipe_scene", no_work)
    config = _recipe_file(tmp_path, tiny_lola_recipe)
    folder = tmp_path / "results"
    folder.mkdir()
    base = ["classify-pixels", "--config", str(config), "--seeds", "0", "--no-progress"]
    assert main([*base, "--output", str(folder), "--overwrite"]) == 2
    assert "is a folder" in capsys.readouterr().err
    # the JSON alone is not replaced silently
    (tmp_path / "r.json").write_text("[]")
    assert main([*base, "--output", str(tmp_path / "r.csv")]) == 2
    assert "r.json exist; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "r.json").read_text() == "[]"
    # nor the recipe itself
    assert main([*base, "--output", str(config), "--overwrite"]) == 2
    assert "never writes over an input" in capsys.readouterr().err


def test_classify_pixels_writes_each_seed_and_resumes(
    tmp_path, tiny_lola_recipe, monkeypatch, capsys
):
    import geofm.tasks.pixel_protocol as protocol

    config = _recipe_file(tmp_path, tiny_lola_recipe)
    out = tmp_path / "r.csv"
    args = [
        "classify-pixels",
        "--config",
        str(config),
        "--seeds",
        "0",
        "1",
        "--methods",
        "svm",
        "--output",
        str(out),
        "--no-progress",
    ]
    run_seed, ran = protocol.run_seed, []

    def interrupted(recipe, scene, fraction, seed, *rest):
        if seed == 1:
            raise KeyboardInterrupt
        ran.append(seed)
        return run_seed(recipe, scene, fraction, seed, *rest)

    monkeypatch.setattr(protocol, "run_seed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    with open(out) as f:
        first = list(csv.DictReader(f))
    assert [r["seed"] for r in first] == ["0", "mean", "std"], "seed 0 written as it ended"
    assert main(args) == 2 and "pass --overwrite" in capsys.readouterr().err

    monkeypatch.setattr(protocol, "run_seed", lambda *a: (ran.append(a[3]), run_seed(*a))[1])
    ran.clear()
    assert main([*args, "--resume"]) == 0
    assert ran == [1], "only the seed the interrupted run had not finished"
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["0", "1", "mean", "std"]
    assert rows[0] == first[0]
    # another recipe cannot resume these results
    other = _recipe_file(tmp_path, {**tiny_lola_recipe, "train": {"epochs": 3}})
    assert main([*args[:2], str(other), *args[3:], "--resume"]) == 2
    err = capsys.readouterr().err
    assert "another recipe" in err and re.search(r"train\.epochs: \d+ -> 3", err), err
