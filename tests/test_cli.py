import subprocess
import sys
from pathlib import Path

import pytest

from geofm.cli import main


def test_info_describes_a_raster(landsat_tif, capsys):
    assert main(["info", str(landsat_tif), "--card", "landsat_rgb"]) == 0
    out = capsys.readouterr().out
    assert "3 bands x 718 x 791" in out and "EPSG:32618" in out


def test_info_on_a_missing_file_names_it(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.tif"), "--card", "landsat_rgb"]) == 2
    assert "missing.tif" in capsys.readouterr().err


def test_cards_lists_sensors_and_datasets(capsys):
    assert main(["cards"]) == 0
    out = capsys.readouterr().out
    assert "sentinel2" in out and "eurosat_ms" in out and "salinas_a" in out


def test_plot_writes_a_png(tmp_path, salinas_a_dir):
    out = tmp_path / "salinas.png"
    assert (
        main(
            [
                "plot",
                str(salinas_a_dir / "SalinasA_corrected.hdr"),
                "--card",
                "salinas_a",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 5000


def test_demo_reads_every_bundled_sample_and_writes_its_figures(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    written = {p.name for p in tmp_path.iterdir()}
    assert {
        "eurosat_ms_classes.png",
        "eurosat_ms_stats.yaml",
        "s2_t33uuu_rgb.png",
        "landsat_rgb.png",
        "salinas_a.png",
        "salinas_a_spectra.png",
    } <= written
    out = capsys.readouterr().out
    assert "Salinas-A" in out and "5348 labelled px" in out


def test_console_script_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "geofm.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in done.stdout and "stats" in done.stdout


def test_corrupt_cube_is_reported_by_name_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"garbage")
    assert main(["info", str(bad), "--card", "salinas_a"]) == 2
    err = capsys.readouterr().err
    assert "bad.mat" in err and "Traceback" not in err


def test_missing_array_message_is_printed_plainly(tmp_path, capsys):
    import numpy as np
    import scipy.io

    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"a": np.zeros((2, 2, 2)), "b": np.zeros((2, 2, 2))})
    assert main(["info", str(path), "--card", "salinas_a"]) == 2
    err = capsys.readouterr().err
    assert "say which to read with key=" in err and not err.split("error: ")[1].startswith('"')


def test_installed_console_scripts_run():
    import shutil

    geofm = shutil.which("geofm", path=str(Path(sys.executable).parent))
    bench = shutil.which("gfm-bench", path=str(Path(sys.executable).parent))
    assert geofm and bench, "console scripts are not installed beside this interpreter"
    done = subprocess.run([geofm, "cards"], capture_output=True, text=True, check=True)
    assert "sentinel2" in done.stdout
    done = subprocess.run([bench, "datasets"], capture_output=True, text=True, check=True)
    assert "GFM-Bench/EuroSAT" in done.stdout and "salinas_a_pixels" in done.stdout


def test_models_lists_the_registry_with_parameter_counts(capsys):
    assert main(["models", "less_vit_*"]) == 0
    out = capsys.readouterr().out
    assert "less_vit_base" in out and "83.2M" in out and "rank 1" in out
    assert "joint_vit" not in out


def test_models_with_no_match_names_the_registered_ones(capsys):
    assert main(["models", "resnet*"]) == 2
    assert "less_vit_tiny" in capsys.readouterr().err


def test_classify_pixels_takes_its_earlier_options_and_a_whole_new_scene(capsys):
    from geofm.cli.train import classify_pixels_argv, prepare_classify_pixels

    recipe_file = str(Path(__file__).resolve().parents[1] / "configs/classify/lola_salinas_a.yaml")
    argv = [
        "--config",
        recipe_file,
        "--cube",
        "a.mat",
        "--gt",
        "b.mat",
        "--epochs",
        "2",
        "--split",
        "disjoint",
        "--download",
        "--train.stop_epoch",  # the recipe's stop epoch lies past a 2-epoch schedule
        "null",
    ]
    out = classify_pixels_argv(argv)
    note = capsys.readouterr().err
    assert "--cube -> --scene.cube" in note and "--epochs -> --train.epochs" in note
    # the recipe's own scene keys are reset right after it, before what the user gave
    assert out[:2] == ["--config", recipe_file]
    assert out[2:6] == [
        "--scene.card=null",
        "--scene.cube_key=null",
        "--scene.gt_key=null",
        "--scene.root=null",
    ]
    assert out[6:] == [
        "--scene.cube",
        "a.mat",
        "--scene.gt",
        "b.mat",
        "--train.epochs",
        "2",
        "--split.kind",
        "disjoint",
        "--scene.download=true",
        "--train.stop_epoch",
        "null",
    ]
    args, recipe = prepare_classify_pixels(argv)
    assert recipe.scene["card"] is None and recipe.scene["cube"] == "a.mat"
    assert recipe.scene["download"] is True and recipe.train["epochs"] == 2
    assert recipe.split["kind"] == "disjoint" and args.seeds == [0, 1, 2]
    assert recipe.model["kwargs"]["patch"] == 7  # the rest is the recipe's
    # options given before the recipe file still win over it (files are read first)
    args, recipe = prepare_classify_pixels(
        ["--cube", "a.mat", "--gt", "b.mat", "--epochs", "2", "--config", recipe_file]
        + ["--train.stop_epoch", "null"]
    )
    assert recipe.scene["cube"] == "a.mat" and recipe.scene["card"] is None
    assert recipe.train["epochs"] == 2
    # without it, the error names the option that fixes it
    with pytest.raises(ValueError, match=r"stop_epoch.*\(2\), got 75.*--train.stop_epoch null"):
        prepare_classify_pixels(["--config", recipe_file, "--epochs", "2"])
    with pytest.raises(ValueError, match="--card, --cube-key and --gt-key describe a scene"):
        classify_pixels_argv(["--config", recipe_file, "--card", "indian_pines"])
    # the split section given whole is the recipe dialect's own option, left as it is
    assert classify_pixels_argv(["--split={kind: random}"]) == ["--split={kind: random}"]
    with pytest.raises(ValueError, match="--scene.cube and --scene.gt go together"):
        classify_pixels_argv(["--config", "r.yaml", "--scene.cube", "a.mat"])
    with pytest.raises(ValueError, match="--train-fraction or --train-per-class"):
        prepare_classify_pixels(
            ["--config", recipe_file, "--train-fraction", "0.1", "--train-per-class", "5"]
        )
